#!/usr/bin/env bash
# Build the images with podman, bring compose.yaml's stack up (Redis, one server, two workers), render one
# render_avatar prompt through the API from the host and one Talk turn, SIGKILL the worker running a prompt and
# check the prompt still finishes on the other one, then tear everything down. Prints times and image sizes.
#
#   scripts/container-check.sh            (root; needs podman, runc, podman-compose, debootstrap: Debian packages)
#
# Environment: ACCELERATOR (cpu), TORCH_INDEX_URL (PyTorch's CPU index; when it is unreachable, PyPI's default
# wheels), AVATARGRAPH_PORT (18188), KEEP_IMAGES=1 keeps the images for a faster second run, PIP_CACHE (a folder
# mounted as pip's cache during the build; default ~/.cache/pip).
#
# Workarounds for hosts like the one this project is built on (../shared/notes/containers.md):
# 1. rootful podman asks for rlimits the host does not grant  -> default_ulimits in a private containers.conf;
# 2. crun refuses cgroups in hybrid mode                       -> runtime "runc" in that containers.conf;
# 3. outgoing HTTPS goes through a proxy with its own CA       -> the host's CA bundle is mounted into the build
#    only (-v ...:/run/build-ca/ca.crt), never copied into the image.
# No registry is reachable here either: the Debian base image is made locally with debootstrap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PROJECT=agcheck
PORT="${AVATARGRAPH_PORT:-18188}"
ACCELERATOR="${ACCELERATOR:-cpu}"
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
PIP_CACHE="${PIP_CACHE:-$HOME/.cache/pip}"
IMAGE="localhost/avatargraph:$ACCELERATOR"
REDIS_IMAGE="localhost/avatargraph-redis"
WORK="$(mktemp -d /tmp/container-check.XXXXXX)"
T0=$(date +%s)

say() { printf '[container-check %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
need() { command -v "$1" >/dev/null || { echo "error: $1 is not installed (apt-get install -y podman runc podman-compose debootstrap)" >&2; exit 2; }; }
need podman; need podman-compose; need debootstrap

# workarounds 1 and 2
printf '[containers]\ndefault_ulimits=["nofile=20000:20000","nproc=32768:32768"]\n[engine]\nruntime="runc"\n' \
  > "$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"

export AVATARGRAPH_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
export AVATARGRAPH_IMAGE="$IMAGE" REDIS_IMAGE AVATARGRAPH_PORT="$PORT"
compose() { podman-compose -p "$PROJECT" -f "$ROOT/compose.yaml" "$@"; }

cleanup() {
  say "tearing down"
  compose down -v >/dev/null 2>&1 || true  # containers, network and the named volumes
  if [ "${KEEP_IMAGES:-0}" != 1 ]; then
    podman rmi -f "$IMAGE" "$REDIS_IMAGE" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# the base image, without a registry
if ! podman image exists localhost/debian:bookworm; then
  say "making the Debian base image with debootstrap"
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "${uri:-http://deb.debian.org/debian}" >/dev/null
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$WORK/rootfs/etc/apt/sources.list.d/"
    rm -f "$WORK/rootfs/etc/apt/sources.list"
  fi
  tar -C "$WORK/rootfs" -c . | podman import - localhost/debian:bookworm >/dev/null
  rm -rf "$WORK/rootfs"
fi

# workaround 3, and where torch comes from
build_args=(--build-arg "BASE_IMAGE=localhost/debian:bookworm" --build-arg "ACCELERATOR=$ACCELERATOR")
mounts=()
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mounts+=(-v "/etc/ssl/certs/ca-certificates.crt:/run/build-ca/ca.crt:ro")
fi
mkdir -p "$PIP_CACHE" && mounts+=(-v "$PIP_CACHE:/root/.cache/pip")
if [ "$ACCELERATOR" = cpu ] && [ -n "$TORCH_INDEX_URL" ] \
   && ! curl -fsS -o /dev/null --max-time 10 "${TORCH_INDEX_URL%/}/torch/"; then
  say "$TORCH_INDEX_URL is unreachable here: taking PyPI's default torch wheels (CUDA 12.8; they run on a CPU too)"
  TORCH_INDEX_URL=""
fi
build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

say "building $REDIS_IMAGE"
t=$(date +%s)
podman build --target redis "${build_args[@]}" -t "$REDIS_IMAGE" . > "$WORK/build-redis.log" 2>&1 \
  || { tail -30 "$WORK/build-redis.log"; exit 1; }
REDIS_BUILD_S=$(( $(date +%s) - t ))
say "building $IMAGE (log: $WORK/build-app.log)"
t=$(date +%s)
podman build --target app "${build_args[@]}" "${mounts[@]}" -t "$IMAGE" . > "$WORK/build-app.log" 2>&1 \
  || { tail -40 "$WORK/build-app.log"; exit 1; }
APP_BUILD_S=$(( $(date +%s) - t ))
size() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
say "built: $IMAGE $(size "$IMAGE") in ${APP_BUILD_S} s; $REDIS_IMAGE $(size "$REDIS_IMAGE") in ${REDIS_BUILD_S} s"

say "starting the stack (redis, server, worker-1, worker-2)"
t=$(date +%s)
compose up -d > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }

say "checking from the host"
"$PY" - "$PORT" "$AVATARGRAPH_TOKEN" "$PROJECT" <<'PYEOF'
import json, subprocess, sys, time, urllib.error, urllib.request, uuid
from pathlib import Path

port, token, project = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"
T0 = time.monotonic()
sys.path.insert(0, ".")
from tests.chaos_support import check_mp4, portrait_png, speech_wav  # noqa: E402
from tests.test_server_support import multipart  # noqa: E402


def say(msg):
    print(f"  [{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


def call(method, path, body=None, raw=None, ctype=None, timeout=30):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    if ctype or body is not None:
        req.add_header("Content-Type", ctype or "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            payload, status, rtype = r.read(), r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        payload, status, rtype = e.read(), e.code, e.headers.get("Content-Type", "")
    return status, (json.loads(payload or b"null") if "json" in rtype else payload)


# the token is required beyond loopback
deadline = time.monotonic() + 600
while True:
    try:
        status, _ = call("GET", "/api/system_stats", timeout=5)
        if status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not come up")
    time.sleep(2)
req = urllib.request.Request(base + "/api/system_stats")
try:
    urllib.request.urlopen(req, timeout=5)
    sys.exit("the server answered without the token")
except urllib.error.HTTPError as e:
    say(f"server up; without the token: HTTP {e.code}")
while len([w for w in call("GET", "/api/system_stats")[1].get("workers", []) if w["alive"]]) < 2:
    if time.monotonic() > deadline:
        sys.exit("two workers did not announce themselves")
    time.sleep(2)
say("two workers alive")


def upload(name, content, ctype):
    body, content_type = multipart({"type": "input"}, {"image": (name, content, ctype)})
    status, reply = call("POST", "/api/upload/image", raw=body, ctype=content_type)
    assert status == 200, (status, reply)
    return reply["name"]


portrait = upload("portrait.png", portrait_png(), "image/png")
short, long_ = upload("speech.wav", speech_wav(1.0), "audio/wav"), upload("long.wav", speech_wav(8.0), "audio/wav")


def render(audio, seed):
    prompt = json.loads(Path("workflows/render_avatar.api.json").read_text())
    for node in prompt.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = portrait
        elif node["class_type"] == "LoadAudio":
            node["inputs"]["audio"] = audio
        elif node["class_type"] == "FaceAnimate":
            node["inputs"]["seed"] = seed
    status, body = call("POST", "/api/prompt", {"prompt": prompt, "prompt_id": uuid.uuid4().hex})
    assert status == 200, body
    return body["prompt_id"]


def wait(prompt_id, timeout=900):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status, body = call("GET", f"/api/history/{prompt_id}")
        if status == 200 and body:
            return body[prompt_id]
        time.sleep(1)
    sys.exit(f"prompt {prompt_id} did not finish")


def fetch_video(entry, expected):
    item = next(i for ui in entry["outputs"].values() for i in ui.get("images", []) if i["filename"].endswith(".mp4"))
    status, data = call("GET", f"/api/view?filename={item['filename']}&subfolder={item.get('subfolder', '')}"
                               "&type=output", timeout=60)
    assert status == 200, status
    path = Path("/tmp") / f"container-check-{uuid.uuid4().hex[:8]}-{item['filename']}"
    path.write_bytes(data)
    problem = check_mp4(path, expected)
    path.unlink()
    assert problem is None, problem
    return item["filename"], len(data)


t = time.monotonic()
entry = wait(render(short, 1))
assert entry["status"]["status_str"] == "success", entry["status"]
name, size = fetch_video(entry, 1.0)
say(f"render_avatar: {name} ({size} bytes, 512x512, 25 fps, 1.0 s) from worker {entry['meta']['worker']} "
    f"in {time.monotonic() - t:.1f} s")

# one Talk turn (typed), through the server's relay to a worker
import websocket  # noqa: E402

t = time.monotonic()
ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/talk?token={token}", timeout=300)
ws.send(json.dumps({"type": "start", "photo": portrait}))
frames = audio = 0
sent = spoke = False
reply = ""
while time.monotonic() - t < 600:
    message = ws.recv()
    if isinstance(message, bytes):
        frames += message[0] == 1
        audio += message[0] == 2
        continue
    data = json.loads(message)
    if data.get("type") == "error":
        sys.exit(f"Talk error: {data}")
    if data.get("type") == "ready" and not sent:
        ws.send(json.dumps({"type": "text", "text": "Hello! What is your name?"}))
        sent = True
    if data.get("type") == "transcript" and data.get("role") in ("assistant", "avatar") and data.get("final"):
        reply = data.get("text", "")
    if data.get("type") == "state" and sent and data.get("state") == "speaking":
        spoke = True
    if data.get("type") == "state" and spoke and data.get("state") == "listening":
        break
ws.close()
assert frames and audio, (frames, audio)
say(f"Talk turn: {frames} frames and {audio} audio packets, reply {reply[:60]!r}, in {time.monotonic() - t:.1f} s")

# kill the worker container running a prompt; the prompt must finish on the other worker
t = time.monotonic()
slow = render(long_, 2)
victim = None
while victim is None and time.monotonic() - t < 300:
    victim = call("GET", "/api/queue")[1].get("running_on", {}).get(slow)
    time.sleep(0.3)
assert victim, "the prompt never started"
time.sleep(2)
containers = subprocess.run(["podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
target = next(c for c in containers if victim in c)
subprocess.run(["podman", "kill", "--signal", "KILL", target], check=True, capture_output=True)
say(f"killed container {target} (worker {victim}) mid-prompt")
entry = wait(slow)
assert entry["status"]["status_str"] == "success", entry["status"]
name, size = fetch_video(entry, 8.0)
assert entry["meta"]["worker"] != victim, entry["meta"]
say(f"the prompt finished on {entry['meta']['worker']}: {name} ({size} bytes) {time.monotonic() - t:.1f} s after "
    "it was queued")
PYEOF
say "stack checks passed in $(( $(date +%s) - t )) s"
podman ps --format '{{.Names}} {{.Status}}' | grep "$PROJECT" || true
say "OK: images $IMAGE $(size "$IMAGE"), $REDIS_IMAGE $(size "$REDIS_IMAGE"); app build ${APP_BUILD_S} s"
