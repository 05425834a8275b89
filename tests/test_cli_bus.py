"""`raft-manager bus send|tail` against a real redis-server."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

from conftest import RedisServer, free_port
from typer.testing import CliRunner

from raft_manager.adapters import Verifier
from raft_manager.cli.main import app
from raft_manager.transport.keys import load_key_file

STREAM = "bus:swarm:requests:quorum-manager"
SECRET = "00112233445566778899aabbccddeeff"


def _cli(*args: str) -> tuple[int, str, str]:
    outcome = CliRunner().invoke(app, ["bus", *args])
    return outcome.exit_code, outcome.stdout, outcome.stderr


def test_send_then_tail_shows_the_envelope_signed_and_verifiable(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys.k1]\nsecret_hex = "{SECRET}"\n')
    url = ("--redis-url", redis_server.url)
    code, out, _ = _cli(
        "send", STREAM, "--type", "quorum.ping", "--payload", '{"n": 1}', "--sign-with",
        str(keys), "--json", *url,
    )  # fmt: skip
    assert code == 0
    sent = json.loads(out)
    envelope = sent["envelope"]
    assert envelope["recipient"] == "quorum-manager" and envelope["cluster"] == "swarm"
    assert envelope["key_id"] == "k1" and envelope["payload"] == {"n": 1}
    code, _, _ = _cli("send", STREAM, "--type", "quorum.ping", "--payload", '{"n": 2}', *url)
    assert code == 0
    code, out, _ = _cli("tail", STREAM, "--count", "5", "--json", *url)
    assert code == 0
    entries = json.loads(out)["entries"]
    assert [entry["envelope"]["payload"] for entry in entries] == [{"n": 1}, {"n": 2}]
    assert entries[0]["entry_id"] == sent["entry_id"]
    verifier = Verifier(
        "swarm",
        load_key_file(keys),
        require_signatures=True,
        replay_window_s=30,
        max_envelope_bytes=65536,
        replay_cache=10,
    )
    raw = json.dumps(entries[0]["envelope"]).encode()
    verifier.check(raw, stream=STREAM, entry_id=sent["entry_id"], recipient="quorum-manager")
    code, out, _ = _cli("tail", STREAM, "--count", "1", *url)
    assert code == 0 and "quorum.ping  raft-manager-cli -> quorum-manager" in out
    assert "unsigned" in out and '{"n": 2}' in out


def test_bad_input_exits_2_and_an_unreachable_redis_exits_4(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = ("--redis-url", redis_server.url)
    for args, problem in (
        (("--payload", "{not json"), "not JSON"),
        (("--payload", "[1]"), "JSON object"),
        (("--payload", "{}", "--sign-with", str(tmp_path / "none.toml")), "none.toml"),
        (("--payload", "{}", "--type", "Bad Type"), "type"),
    ):
        arguments = ["send", STREAM, "--type", "quorum.ping", *args, *url]
        if "--type" in args:
            arguments[2:4] = []
        code, _, err = _cli(*arguments)
        assert code == 2 and problem in err, (args, err)
    code, _, err = _cli("send", "plain-stream", "--type", "a.b", "--payload", "{}", *url)
    assert code == 2 and "--recipient" in err
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = _cli("tail", STREAM, "--redis-url", dead)
    assert code == 4 and "Redis at" in err
    code, _, err = _cli("send", STREAM, "--type", "a.b", "--payload", "{}", "--redis-url", dead)
    assert code == 4


def test_tail_follow_prints_new_entries_as_json_lines(redis_server: RedisServer) -> None:
    stream = "bus:swarm:requests:follow-test"

    def send(n: int) -> None:
        code, _, _ = _cli(
            "send", stream, "--type", "test.item", "--payload", json.dumps({"n": n}),
            "--redis-url", redis_server.url,
        )  # fmt: skip
        assert code == 0

    send(1)
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "raft_manager.cli", "bus", "tail", stream, "--count", "1",
            "--follow", "--json", "--redis-url", redis_server.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,  # unbuffered: select() sees every line that Python has not read yet
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        lines = []
        for n in (1, 2):
            ready, _, _ = select.select([follower.stdout], [], [], 15)
            assert ready, f"tail --follow did not print entry {n}"
            lines.append(json.loads(follower.stdout.readline()))
            if n == 1:
                send(2)  # after the first line: only the follow loop can see it
        assert [line["envelope"]["payload"] for line in lines] == [{"n": 1}, {"n": 2}]
        assert all(line["error"] is None for line in lines)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
