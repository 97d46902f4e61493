"""The AvatarGraph release, and the version of the protocol its cluster members speak over Redis."""

VERSION = "0.1.0"
# Bump when the Redis keys or messages of engine/cluster.py, engine/redis_queue.py or server/talk_relay.py change:
# a worker of another protocol version is refused.
CLUSTER_PROTOCOL = 1
