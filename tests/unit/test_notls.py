"""csp_core.notls: the gateway and the sidecar run, hash and serve with no OpenSSL loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_what_the_gateway_and_sidecar_import_works_without_tls() -> None:
    r = run_python("""
        import sys
        from csp_core.notls import forgo_tls
        assert forgo_tls() is True
        import asyncio, hashlib, hmac, secrets
        import aiohttp.web
        from csp_core.auth import agent_credential
        from csp_core.streamclient import StreamClient
        # the hashes csp uses come from Python's own code
        assert hashlib.sha1(b"abc").hexdigest() == "a9993e364706816aba3e25717850c26c9cd0d89d"
        assert len(agent_credential("alpha", secrets.token_hex(16))) > 20
        loaded = sorted(m for m in ("ssl", "_ssl", "_hashlib") if sys.modules.get(m))
        print("loaded:", loaded)
        with open("/proc/self/maps") as maps:
            print("libssl" in maps.read())
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["loaded: []", "False"]


def test_a_known_hmac_still_comes_out_right() -> None:
    """RFC 4231 test case 2, through the pure-Python HMAC that remains."""
    r = run_python("""
        from csp_core.notls import forgo_tls
        forgo_tls()
        import hashlib, hmac
        print(hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest())
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("5bdcc146bf60754e6a042426089575c75a003f089d27"
                                "39839dec58b964ec3843")


def test_nothing_is_taken_from_a_process_that_already_has_tls() -> None:
    r = run_python("""
        import ssl
        from csp_core.notls import forgo_tls
        assert forgo_tls() is False
        import _hashlib, sys
        assert sys.modules["ssl"] is ssl
        print("kept")
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "kept"


@pytest.mark.parametrize("module", ["cspd", "csp_sidecar"])
def test_the_programs_start_through_the_entry_that_forgoes_tls(module: str) -> None:
    """``python -m`` and the console scripts go through ``entry.main``: ``--help`` runs
    with OpenSSL absent (a module that needed it would fail to import here)."""
    r = run_python(f"""
        import runpy, sys
        sys.argv = ["{module}", "--help"]
        try:
            runpy.run_module("{module}", run_name="__main__")
        except SystemExit:
            pass
        print("ssl loaded:", sys.modules.get("ssl") is not None)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ssl loaded: False")
