"""An echo model as a program speaking modelport's JSON-lines protocol: each
``{"id": ..., "input": {...}}`` line is answered ``{"id": ..., "output": {...}}``."""

import sys

import orjson

sys.stdout.buffer.write(b'{"ready": true}\n')
sys.stdout.flush()
for line in sys.stdin.buffer:
    job = orjson.loads(line)
    sys.stdout.buffer.write(orjson.dumps({"id": job["id"], "output": job["input"]}) + b"\n")
    sys.stdout.flush()
