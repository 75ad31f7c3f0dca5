"""A subprocess model for the adapter tests: JSON lines on stdin and stdout.

What it does with a job depends on the input's ``mode``: ``echo`` (the default), ``stream``
(progress and chunks first), ``log`` (stderr lines), ``garbage`` (lines that are not the
protocol first), ``error`` (answers an error), ``crash`` (exits mid-job; ``crash_once``
only while the file named by ``$CRASH_MARK`` does not exist), ``hang`` (never answers).
"""

import json
import os
import sys
import time

time.sleep(float(os.environ.get("SETUP_SECONDS", "0")))
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    job_id, given = job["id"], job["input"]
    mode, text = given.get("mode", "echo"), given.get("text", "")

    def send(job_id: object = job_id, **fields: object) -> None:
        print(json.dumps({"id": job_id, **fields}), flush=True)

    if mode == "stream":
        for i, word in enumerate(text.split()):
            send(progress=(i + 1) / len(text.split()), message=f"word {i + 1}")
            send(chunk=word)
        send(output={"text": text, "pid": os.getpid()})
    elif mode == "log":
        print(f"info: working on {text}", file=sys.stderr, flush=True)
        print("warning: this is a warning", file=sys.stderr, flush=True)
        send(output={"text": text, "pid": os.getpid()})
    elif mode == "garbage":
        print("this is not json", flush=True)
        print("[1, 2, 3]", flush=True)
        print(json.dumps({"id": "someone-else", "output": {"text": "wrong"}}), flush=True)
        send(output={"text": text, "pid": os.getpid()})
    elif mode == "error":
        send(error=f"cannot do {text!r}")
    elif mode in ("crash", "crash_once"):
        mark = os.environ["CRASH_MARK"]
        if mode == "crash" or not os.path.exists(mark):
            open(mark, "a").close()
            print("fatal: crashing now", file=sys.stderr, flush=True)
            os._exit(3)
        send(output={"text": text, "pid": os.getpid()})
    elif mode == "hang":
        time.sleep(3600)
    else:
        send(output={"text": text, "pid": os.getpid()})
