#!/usr/bin/env python3
"""Regenerates the captured git smart-HTTP request bodies in this directory.

Serves bare repositories through `git http-backend` (as CGI, on 127.0.0.1
only), drives real `git push`/`git clone` against it, and saves the body of
every `POST .../git-receive-pack` exactly as the client sent it, plus one
line per request in requests.txt. Dates and identities are fixed so reruns
give the same commits; see README.md. Usage: python3 capture.py
"""
import http.server
import os
import shutil
import subprocess
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="Bridle Test",
    GIT_AUTHOR_EMAIL="test@bridle.invalid",
    GIT_COMMITTER_NAME="Bridle Test",
    GIT_COMMITTER_EMAIL="test@bridle.invalid",
    GIT_AUTHOR_DATE="2026-01-01T00:00:00Z",
    GIT_COMMITTER_DATE="2026-01-01T00:00:00Z",
    GIT_CONFIG_NOSYSTEM="1",
    GIT_TERMINAL_PROMPT="0",
)


class State:
    root = ""
    capture_as = None  # file name for the next receive-pack POST body
    requests = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return out
                out += chunk
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def handle_git(self):
        path, _, query = self.path.partition("?")
        data = self.body() if self.command == "POST" else b""
        State.requests.append(
            f"{self.command} {path} {query or '-'} {self.headers.get('Content-Type') or '-'}"
            f" {self.headers.get('Git-Protocol') or '-'}"
        )
        if path.endswith("/git-receive-pack") and State.capture_as:
            with open(os.path.join(HERE, State.capture_as), "wb") as f:
                f.write(data)
            State.capture_as = None
        env = dict(
            ENV,
            GIT_PROJECT_ROOT=State.root,
            GIT_HTTP_EXPORT_ALL="1",
            REMOTE_USER="tester",
            REMOTE_ADDR="127.0.0.1",
            REQUEST_METHOD=self.command,
            PATH_INFO=path,
            QUERY_STRING=query,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(data)),
            HTTP_GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
            HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
        )
        out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = handle_git
    do_POST = handle_git


def git(*args, cwd=None):
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.decode()}")


def commit(repo, name, text):
    with open(os.path.join(repo, name), "w") as f:
        f.write(text)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", f"add {name}", cwd=repo)


def push(repo, capture, *args):
    State.capture_as = capture
    State.requests.append(f"# git push {' '.join(args)} -> {capture}")
    git("push", "-q", *args, cwd=repo)


def main():
    tmp = tempfile.mkdtemp(prefix="bridle-git-capture-")
    State.root = tmp
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # SHA-1: create, update + create several, delete, push options.
        git("init", "-q", "--bare", "-b", "main", "repo.git", cwd=tmp)
        git("config", "receive.advertisePushOptions", "true", cwd=os.path.join(tmp, "repo.git"))
        work = os.path.join(tmp, "work")
        git("init", "-q", "-b", "main", work)
        git("remote", "add", "origin", f"{base}/repo.git", cwd=work)
        commit(work, "a.txt", "one\n")
        push(work, "push-create.bin", "origin", "main")
        commit(work, "b.txt", "two\n")
        git("tag", "v1", cwd=work)
        git("branch", "feature", cwd=work)
        push(work, "push-update-multi.bin", "origin", "main", "feature", "refs/tags/v1")
        push(work, "push-delete.bin", "origin", ":feature")
        commit(work, "c.txt", "three\n")
        push(work, "push-options.bin", "-o", "ci.skip", "-o", "reviewer=alice", "origin", "main")

        # SHA-256 repositories: 64-hex object ids.
        git("init", "-q", "--bare", "-b", "main", "--object-format=sha256", "repo256.git", cwd=tmp)
        work256 = os.path.join(tmp, "work256")
        git("init", "-q", "-b", "main", "--object-format=sha256", work256)
        git("remote", "add", "origin", f"{base}/repo256.git", cwd=work256)
        commit(work256, "a.txt", "one\n")
        push(work256, "push-sha256.bin", "origin", "main")

        # A signed push (push certificate), signed with an SSH key.
        git("config", "receive.certNonceSeed", "bridle-test-seed", cwd=os.path.join(tmp, "repo.git"))
        key = os.path.join(tmp, "signing-key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        git("config", "gpg.format", "ssh", cwd=work)
        git("config", "user.signingkey", key, cwd=work)
        commit(work, "e.txt", "five\n")
        git("tag", "v2", cwd=work)
        push(work, "push-signed.bin", "--signed", "origin", "main", "refs/tags/v2")

        # A push from a shallow clone sends `shallow <oid>` lines first.
        shallow = os.path.join(tmp, "shallow")
        State.requests.append("# git clone --depth 1")
        git("clone", "-q", "--depth", "1", f"{base}/repo.git", shallow)
        commit(shallow, "d.txt", "four\n")
        push(shallow, "push-shallow.bin", "origin", "main")

        with open(os.path.join(HERE, "requests.txt"), "w") as f:
            f.write("# method path query content-type git-protocol, one request a line (capture.py)\n")
            f.write("\n".join(State.requests) + "\n")
    finally:
        server.shutdown()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
