"""A fast OpenAI-compatible chat server for benchmarks: fixed latency, scripted answers.

    python bench/fake_server.py --port 0 --latency-ms 50     # prints 'listening <base_url>'

Explainer prompts (a trailing assistant turn holding [EXPLANATION]) get an explanation; every other
request gets ' 1' or ' 0' with top log-probabilities, like a detection/fuzzing judge. A request
with a JSON schema (`response_format`, as interp sends for one-call judging and JSON
explanations) gets a valid instance of it, as a constraining server would: the request mix is
then the default protocol's, one request per latent and scorer. Uvicorn with one asyncio worker:
thousands of requests per second, so the client side is what is measured.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LOGPROBS = {"content": [{"token": " 1", "logprob": -0.2, "bytes": None,
                         "top_logprobs": [{"token": " 1", "logprob": -0.2, "bytes": None},
                                          {"token": " 0", "logprob": -1.7, "bytes": None}]}]}


def instance(schema: dict):
    """A valid value of the JSON schemas interp sends: objects of required properties, integer
    enums (the last value: a judge that says 1), strings within maxLength."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][-1]
    if kind == "object":
        return {k: instance(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "array":
        return [instance(schema["items"]) for _ in range(schema.get("minItems", 1))]
    if kind == "integer":
        return schema.get("minimum", 0)
    return "the token t1 and its neighbours"[:schema.get("maxLength", 64)]


def app(latency_s: float) -> Starlette:
    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        await asyncio.sleep(latency_s)
        last = body["messages"][-1]["content"]
        explain = "EXPLANATION" in last
        text = "[EXPLANATION]: the token t1 and its neighbours" if explain else " 1"
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is not None:
            text, explain = json.dumps(instance(schema), separators=(",", ":")), True
        choice = {"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": text}}
        if body.get("logprobs") and not explain:
            choice["logprobs"] = LOGPROBS
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [choice],
               "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}}
        return Response(json.dumps(out), media_type="application/json")

    async def models(request: Request) -> Response:
        return Response(json.dumps({"object": "list", "data": []}), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    print(f"listening http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
    # httptools + uvloop when installed (the bench extra): the server must outrun the client
    # it measures; uvicorn's pure-Python h11 parser tops out near 100 requests/s here.
    config = uvicorn.Config(app(args.latency_ms / 1000), log_level="error", access_log=False,
                            backlog=4096, limit_concurrency=None, http="auto", loop="auto")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
