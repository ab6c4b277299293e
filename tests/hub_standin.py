"""A stand-in for the Hugging Face Hub routes rtsr uses, served on a local port and reached
through the real ``huggingface_hub`` client with ``HF_ENDPOINT``.

- ``whoami-v2``: Gradio's mocked login asks it who the machine's token belongs to.
- Model info (``HfApi.model_info``) for the fixed ``models`` given, which the Submit tab pins.
- Repos that live here, with a history: creation (``/api/repos/create``), info at a revision,
  the tree, file resolve (GET and HEAD, with the headers the client checks), preupload,
  commits (the NDJSON payload, ``parentCommit`` included) and the commit list.

It is as strict as the Hub where rtsr relies on it: a commit whose ``parentCommit`` is not the
head is refused with 412; a write without a token is 401, and outside the token's namespaces
403; a private repo is not found without a token (401, as the Hub answers); missing repos,
revisions and files are 404 with the ``X-Error-Code`` the client turns into
``RepositoryNotFoundError``, ``RevisionNotFoundError`` and ``EntryNotFoundError``. Files are
committed inline (``uploadMode: regular``) and identified by their git blob hash, which the
client compares to skip files that did not change, as against the Hub.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

TOKEN = "hf_standin_token_for_tests"
#: A token of the same user that may read but not write.
READ_TOKEN = "hf_standin_read_token_for_tests"
USER = {"type": "user", "name": "alice", "fullname": "Alice Tester", "avatarUrl": "", "orgs": []}
#: The namespaces TOKEN may write to: the user's own and an organisation's.
NAMESPACES = ("alice", "lab")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_id(content: bytes) -> str:
    """The git object id of a file, as the Hub reports it for files not in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, bytes]
    date: float


@dataclass
class PullRequest:
    num: int
    title: str
    description: str
    commit: Commit


@dataclass
class Repo:
    type: str  # "model", "dataset", "space"
    id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    #: Whether others may open pull requests (the Hub's "discussions" setting).
    discussions: bool = True
    pulls: list[PullRequest] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def at(self, revision: str) -> Commit | None:
        if revision in ("main", "refs/heads/main"):
            return self.head
        for pull in self.pulls:
            if revision in (f"refs/pr/{pull.num}", pull.commit.oid):
                return pull.commit
        return next((c for c in self.commits if c.oid == revision), None)

    def commit(self, title: str, files: dict[str, bytes], pull: bool = False) -> Commit:
        """A commit on main, or with ``pull`` one on top of main that only a pull request holds."""
        parent = self.commits[-1].oid if self.commits else None
        digest = hashlib.sha1(
            json.dumps([parent, title, sorted((p, git_blob_id(c)) for p, c in files.items())]).encode()
        )
        commit = Commit(digest.hexdigest(), parent, title, dict(files), time.time())
        if not pull:
            self.commits.append(commit)
        return commit


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubStandIn:
    """``models``: ``{"org/name": (commit, [files])}``, fixed model repos whose info is served;
    repos created through the API (or with :meth:`create`) live in :attr:`repos`."""

    def __init__(self, models: dict[str, tuple[str, list[str]]] | None = None) -> None:
        self.models = models or {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                standin.connections.add(self.connection)

            def finish(self) -> None:
                standin.connections.discard(self.connection)
                super().finish()

            def _send(
                self, code: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
            ) -> None:
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                standin.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, answer, headers, raw = standin.route(self.command, self.path, self._token(), body)
                except HubError as e:
                    headers = {"X-Error-Message": e.message}
                    if e.code:
                        headers["X-Error-Code"] = e.code
                    self._send(e.status, {"error": e.message}, headers)
                    return
                self._send(status, answer, headers, raw)

            def _token(self) -> str | None:
                auth = self.headers.get("Authorization") or ""
                return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

            do_GET = do_POST = do_HEAD = _handle

        self._handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, and drop the connections clients keep alive: the Hub gone."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def restart(self) -> None:
        """Serve again on the same port, with the repos as they were: the Hub back."""
        self.server = ThreadingHTTPServer(("127.0.0.1", int(self.url.rsplit(":", 1)[1])), self._handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self, token: str | None = TOKEN) -> dict[str, str]:
        """What makes huggingface_hub talk to this stand-in, signed in with ``token``."""
        env = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
        if token:
            env["HF_TOKEN"] = token
        return env

    def use_in_this_process(self, home: Path, monkeypatch: Any, token: str | None = TOKEN) -> None:
        """Point this process's ``huggingface_hub`` here, online, with ``home`` as ``$HF_HOME``
        (``HF_ENDPOINT`` is read when the package is imported: its constants are set instead)."""
        import huggingface_hub.constants as constants

        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HOME", str(home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        if token:
            monkeypatch.setenv("HF_TOKEN", token)
        else:
            monkeypatch.delenv("HF_TOKEN", raising=False)

    def create(self, repo_type: str, repo_id: str, private: bool = True) -> Repo:
        """A repo with the Hub's first commit (its ``.gitattributes``)."""
        with self.lock:
            repo = Repo(repo_type, repo_id, private)
            repo.commit("initial commit", {".gitattributes": GITATTRIBUTES})
            self.repos[repo_type, repo_id] = repo
            return repo

    # --- routing ----------------------------------------------------------------------

    def route(
        self, method: str, target: str, token: str | None, body: bytes
    ) -> tuple[int, Any, dict[str, str] | None, bytes | None]:
        url = urlparse(target)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/api/whoami-v2"):
            if token not in (TOKEN, READ_TOKEN):
                raise HubError(401, "Invalid credentials in Authorization header")
            return 200, USER, None, None
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if path == "/api/repos/create" and method == "POST":
            return self._create(token, json.loads(body or b"{}"))
        match = re.match(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$", path)
        if match:
            kind, repo_id, rest = match[1][:-1], unquote(match[2]), match[3] or ""
            if kind == "model" and repo_id in self.models and (rest == "" or rest.startswith("revision/")):
                return self._fixed_model(repo_id, unquote(rest.removeprefix("revision/")) or None)
            return self._api(method, kind, repo_id, rest, token, body, query)
        match = re.match(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match and method in ("GET", "HEAD"):
            kind = (match[1] or "models")[:-1]
            return self._resolve(kind, unquote(match[2]), unquote(match[3]), unquote(match[4]), token)
        raise HubError(404, f"no route {method} {path}")

    def _validate_yaml(self, payload: dict[str, Any]) -> tuple[int, Any, None, None]:
        """The Hub checks a README's metadata before a commit takes it."""
        import yaml

        content = str(payload.get("content") or "")
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as e:
                raise HubError(400, f"Invalid YAML metadata: {e}") from None
        return 200, {"errors": [], "warnings": []}, None, None

    def _fixed_model(self, repo_id: str, revision: str | None) -> tuple[int, Any, None, None]:
        commit, files = self.models[repo_id]
        if revision not in (None, "main", commit):
            raise HubError(404, "Revision Not Found", "RevisionNotFound")
        siblings = [{"rfilename": f} for f in files]
        return 200, {"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings}, None, None

    def _readable(self, kind: str, repo_id: str, token: str | None) -> Repo:
        repo = self.repos.get((kind, repo_id))
        if repo is None:
            raise HubError(404 if token else 401, "Repository Not Found", "RepoNotFound")
        if repo.private and token not in (TOKEN, READ_TOKEN):
            # the Hub does not tell a private repo from a missing one
            raise HubError(401 if token is None else 404, "Repository Not Found", "RepoNotFound")
        return repo

    def _writable(self, kind: str, repo_id: str, token: str | None) -> Repo:
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self._readable(kind, repo_id, token)
        if token != TOKEN or repo_id.split("/")[0] not in NAMESPACES:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _proposable(self, kind: str, repo_id: str, token: str | None) -> Repo:
        """A repo ``token`` may open a pull request on: any it can read, with a token that may
        write, unless its owner turned discussions off."""
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self._readable(kind, repo_id, token)
        if token != TOKEN:
            raise HubError(403, f"You don't have the rights to open a pull request on {repo_id}")
        if not repo.discussions:
            raise HubError(403, "Discussions are disabled for this repo")
        return repo

    def _create(self, token: str | None, payload: dict[str, Any]) -> tuple[int, Any, None, None]:
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        namespace = payload.get("organization") or USER["name"]
        repo_id = f"{namespace}/{payload.get('name')}"
        kind = payload.get("type") or "model"
        if token != TOKEN or namespace not in NAMESPACES:
            raise HubError(403, f"You don't have the rights to create a repo under {namespace}")
        if (kind, repo_id) in self.repos:
            raise HubError(409, "You already created this repo")
        self.create(kind, repo_id, payload.get("visibility", "private") != "public" or bool(payload.get("private")))
        prefix = "" if kind == "model" else f"{kind}s/"
        return 200, {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id}, None, None

    def _api(
        self, method: str, kind: str, repo_id: str, rest: str, token: str | None, body: bytes, query: dict[str, Any]
    ) -> tuple[int, Any, None, None]:
        with self.lock:
            if method == "GET" and (rest == "" or rest.startswith("revision/")):
                repo = self._readable(kind, repo_id, token)
                commit = self._at(repo, unquote(rest.removeprefix("revision/")) or "main")
                siblings = [{"rfilename": p} for p in sorted(commit.files)]
                info = {"id": repo_id, "sha": commit.oid, "private": repo.private, "siblings": siblings}
                return 200, {**info, "lastModified": _iso(commit.date)}, None, None
            if method == "GET" and rest.startswith("tree/"):
                repo = self._readable(kind, repo_id, token)
                revision, _, prefix = rest.removeprefix("tree/").partition("/")
                commit = self._at(repo, unquote(revision))
                return (
                    200,
                    _tree(commit, unquote(prefix), query.get("recursive", ["false"])[0].lower() == "true"),
                    None,
                    None,
                )
            if method == "GET" and rest.startswith("commits/"):
                repo = self._readable(kind, repo_id, token)
                step: Commit | None = self._at(repo, unquote(rest.removeprefix("commits/")))
                history = []
                while step is not None:
                    history.append(
                        {"id": step.oid, "title": step.title, "message": "", "authors": [], "date": _iso(step.date)}
                    )
                    step = repo.at(step.parent) if step.parent else None
                return 200, history, None, None
            pull = bool(query.get("create_pr"))
            if method == "POST" and rest.startswith("preupload/"):
                repo = self._proposable(kind, repo_id, token) if pull else self._writable(kind, repo_id, token)
                commit = self._at(repo, unquote(rest.removeprefix("preupload/")))
                files = []
                for item in json.loads(body)["files"]:
                    existing = commit.files.get(item["path"])
                    oid = git_blob_id(existing) if existing is not None else None
                    files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
                return 200, {"files": files, "commitOid": commit.oid}, None, None
            if method == "POST" and rest.startswith("commit/"):
                repo = self._proposable(kind, repo_id, token) if pull else self._writable(kind, repo_id, token)
                return self._commit(repo, unquote(rest.removeprefix("commit/")), body, query)
        raise HubError(404, f"no route {method} /api/{kind}s/{repo_id}/{rest}")

    def _at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.at(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _commit(self, repo: Repo, revision: str, body: bytes, query: dict[str, Any]) -> tuple[int, Any, None, None]:
        pull = bool(query.get("create_pr"))
        if revision != "main":
            raise HubError(400, "commits go to main here")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), None)
        if header is None:
            raise HubError(400, "a commit needs a header")
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.head.oid and not pull:
            raise HubError(
                412, f"A commit has happened since. Please refresh and try again. ({parent} is not the head)"
            )
        files = dict(repo.head.files)
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif line["key"] == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(folder)}
            elif line["key"] != "header":
                raise HubError(400, f"this stand-in takes no {line['key']}")
        commit = repo.commit(header.get("summary") or "", files, pull=pull)
        prefix = "" if repo.type == "model" else f"{repo.type}s/"
        answer = {"commitUrl": f"{self.url}/{prefix}{repo.id}/commit/{commit.oid}", "commitOid": commit.oid}
        if pull:
            number = len(repo.pulls) + 1
            repo.pulls.append(PullRequest(number, commit.title, header.get("description") or "", commit))
            answer["pullRequestUrl"] = f"{self.url}/{prefix}{repo.id}/discussions/{number}"
        return 200, answer, None, None

    def _resolve(
        self, kind: str, repo_id: str, revision: str, path: str, token: str | None
    ) -> tuple[int, Any, dict[str, str], bytes]:
        with self.lock:
            repo = self._readable(kind, repo_id, token)
            commit = self._at(repo, revision)
            content = commit.files.get(path)
            if content is None:
                raise HubError(404, "Entry not found", "EntryNotFound")
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_id(content)}"'}
            return 200, None, headers, content


def _tree(commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    base = prefix.rstrip("/") + "/" if prefix else ""
    entries, folders = [], set()
    for path, content in sorted(commit.files.items()):
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        if "/" in rest and not recursive:
            folders.add(base + rest.split("/")[0])
            continue
        if recursive:
            parts = rest.split("/")[:-1]
            folders.update(base + "/".join(parts[: i + 1]) for i in range(len(parts)))
        entries.append({"type": "file", "oid": git_blob_id(content), "size": len(content), "path": path})
    return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)] + entries


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))
