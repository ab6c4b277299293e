"""A stand-in for the few Hugging Face Hub routes the Submit tab needs, served on a local
port: ``whoami-v2`` (Gradio's mocked login asks it who the machine's token belongs to) and
model info (``HfApi.model_info``, which pins ``org/name`` to its commit). The app talks to it
through the real ``huggingface_hub`` client, pointed here with ``HF_ENDPOINT``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_standin_token_for_tests"
USER = {"type": "user", "name": "alice", "fullname": "Alice Tester", "avatarUrl": "", "orgs": []}


class HubStandIn:
    """``models``: ``{"org/name": (commit, [files])}``; every other repo is not found."""

    def __init__(self, models: dict[str, tuple[str, list[str]]]) -> None:
        self.models = models
        self.requests: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                standin.requests.append(self.path)
                if self.path.startswith("/api/whoami-v2"):
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        self._send(401, {"error": "Invalid credentials"})
                    else:
                        self._send(200, USER)
                    return
                match = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/?]+))?", self.path)
                if match and match[1] in standin.models:
                    commit, files = standin.models[match[1]]
                    if match[2] not in (None, "main", commit):
                        self._send(404, {"error": "Revision Not Found"}, {"X-Error-Code": "RevisionNotFound"})
                        return
                    siblings = [{"rfilename": f} for f in files]
                    self._send(200, {"id": match[1], "modelId": match[1], "sha": commit, "siblings": siblings})
                    return
                self._send(404, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        """What makes huggingface_hub (in the app) talk to this stand-in, signed in."""
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
