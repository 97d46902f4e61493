"""The AvatarGraph release, and the version of the protocol its cluster members speak over Redis."""

VERSION = "0.1.0"
# Bump when the Redis keys or messages of engine/queue/cluster.py, engine/queue/redis_store.py or server/talk/relay.py change:
# a worker of another protocol version is refused.
CLUSTER_PROTOCOL = 1
