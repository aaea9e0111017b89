"""`kfp-yolo submit` against a local HTTP server standing in for the KFP REST API (v2beta1):
the `kfp_server` fixture of tests/kfp_fake.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from kfp_fake import API, NEW_TOKEN, OLD_TOKEN

from kfp_yolo.components.config.run_config import COMPILE_TIME
from kfp_yolo.components.errors import Fault
from kfp_yolo.pipelines import cmd_submit, kfp_api
from kfp_yolo.pipelines.cli import main


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_token_sent_as_bearer_and_reread_after_401(kfp_server, config_file, tmp_path):
    state, host = kfp_server
    token_file = _write(tmp_path / "token", OLD_TOKEN + "\n")
    # The kubelet rotates the projected token just as the server starts refusing the old one.
    state.on_unauthorized = lambda: _write(token_file, NEW_TOKEN)

    code = main(["submit", "--config", str(config_file), "--host", host,
                 "--token-file", str(token_file)])

    assert code == 0
    headers = [auth for _, _, auth in state.requests]
    assert headers[0] == f"Bearer {OLD_TOKEN}"
    assert set(headers[1:]) == {f"Bearer {NEW_TOKEN}"}
    assert len(state.created_runs()) == 1


def test_sa_token_path_env_is_used(kfp_server, config_file, tmp_path, monkeypatch):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(_write(tmp_path / "sa", NEW_TOKEN)))
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", host)

    assert main(["submit", "--config", str(config_file)]) == 0
    assert {auth for _, _, auth in state.requests} == {f"Bearer {NEW_TOKEN}"}


def test_same_config_twice_starts_one_run(kfp_server, config_file, monkeypatch, capsys):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    argv = ["submit", "--config", str(config_file), "--host", host]

    assert main(argv) == 0
    assert main(argv) == 0

    runs = state.created_runs()
    assert len(runs) == 1
    assert runs[0]["display_name"].startswith("nightly-")
    assert runs[0]["runtime_config"]["parameters"]["epochs"] == 3
    # what the compiled pipeline takes: its run-time parameters, not the compiled-in keys
    assert not set(runs[0]["runtime_config"]["parameters"]) & COMPILE_TIME
    assert "already exists" in capsys.readouterr().out
    assert main([*argv, "--set", "epochs=4"]) == 0  # another config, another run
    assert len(state.created_runs()) == 2


def test_wait_follows_the_run_to_its_end(kfp_server, config_file, monkeypatch):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    state.states = ["PENDING", "RUNNING", "SUCCEEDED"]
    argv = ["submit", "--config", str(config_file), "--host", host, "--wait"]
    assert main(argv) == 0

    state.states = ["RUNNING", "FAILED"]
    assert main([*argv, "--set", "epochs=5"]) == 1


def test_no_token_in_any_output(kfp_server, config_file, tmp_path, monkeypatch, capfd, caplog):
    state, host = kfp_server
    caplog.set_level(logging.DEBUG)
    token_file = _write(tmp_path / "token", OLD_TOKEN)
    state.valid_tokens = {"something-else"}  # refused, also after re-reading

    code = main(["submit", "--config", str(config_file), "--host", host,
                 "--token-file", str(token_file), "--wait"])

    out, err = capfd.readouterr()
    assert code == 2
    assert "refused the token from --token-file" in err and "HTTP 401" in err
    assert [auth for *_, auth in state.requests] == [f"Bearer {OLD_TOKEN}"] * 2  # one retry
    for text in (out, err, caplog.text):
        assert OLD_TOKEN not in text

    # A successful run, logs at DEBUG included, shows no token either.
    state.valid_tokens = {OLD_TOKEN}
    assert main(["submit", "--config", str(config_file), "--host", host,
                 "--token-file", str(token_file), "--wait"]) == 0
    out, err = capfd.readouterr()
    for text in (out, err, caplog.text):
        assert OLD_TOKEN not in text


def test_token_scrubbed_from_unexpected_errors(kfp_server, config_file, monkeypatch, capfd):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)

    def leaky(*args, **kwargs):
        raise ValueError(f"server said: bad header Bearer {NEW_TOKEN}")

    monkeypatch.setattr(cmd_submit, "_existing_run", leaky)
    for debug in ([], ["--debug"]):  # the sentence, and with --debug the traceback too
        assert main(["submit", "--config", str(config_file), "--host", host, *debug]) == 1
        err = capfd.readouterr().err
        assert NEW_TOKEN not in err and "***" in err
        assert err.splitlines()[-1].startswith("kfp-yolo: failed: unexpected RuntimeError")
        assert ("Traceback" in err) == bool(debug)


def test_missing_host_is_a_usage_error(kfp_server, config_file, capsys):
    assert main(["submit", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert "no KFP endpoint given; pass --host URL" in err
    assert "KF_PIPELINES_ENDPOINT" in err and "Traceback" not in err


def test_unreadable_token_file_names_the_file_not_the_token(kfp_server, config_file, tmp_path,
                                                            capsys):
    _, host = kfp_server
    missing = tmp_path / "nope"
    assert main(["submit", "--config", str(config_file), "--host", host,
                 "--token-file", str(missing)]) == 2
    assert f"cannot read the API token from --token-file {missing}" in capsys.readouterr().err


def test_unreachable_host_is_one_sentence(kfp_server, config_file, capsys):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["submit", "--config", str(config_file), "--host",
                 f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach the KFP API at" in capsys.readouterr().err


def test_server_wanting_a_token_when_none_is_set(kfp_server, config_file, capsys):
    _, host = kfp_server
    assert main(["submit", "--config", str(config_file), "--host", host]) == 2
    assert "needs a token (HTTP 401)" in capsys.readouterr().err


@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_a_login_page_is_not_the_kfp_api(kfp_server, config_file, monkeypatch, capfd, wait):
    """An auth proxy answers 200 with HTML: nothing is reported submitted, exit 2, no traceback."""
    state, host = kfp_server
    state.login_page = True
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)

    code = main(["submit", "--config", str(config_file), "--host", host, *wait])

    out, err = capfd.readouterr()
    assert code == 2
    assert "submitted" not in out and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"kfp-yolo: error: {host} does not speak the KFP API")
    assert "an HTML page (HTTP 200; a login page or an auth proxy?)" in lines[0]
    assert "/oauth2/sign_in" in lines[0]  # the page the redirect ended on
    assert not state.created_runs() and not state.experiments


def test_kfp_api_failing_during_wait_is_a_fault(kfp_server, config_file, monkeypatch, capfd):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    state.run_status = 503

    code = main(["submit", "--config", str(config_file), "--host", host, "--wait"])

    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"kfp-yolo: failed: the KFP API at {host} failed to get the run (HTTP 503")
    assert "try again later" in err
    polls = [path for method, path, _ in state.requests
             if method == "GET" and path.startswith(f"{API}/runs/")]
    assert len(polls) == cmd_submit.FOLLOW_MISSES  # retried, then given up
    assert len(state.created_runs()) == 1


# ---- issue 18: bounded calls, slow vs unreachable, 409, a failed last run ---------------------


def test_an_api_that_stalls_after_its_health_check_is_a_fault(kfp_server, config_file,
                                                              monkeypatch, capfd):
    """The real defaults stop a stall within API_TIMEOUT_S (110 s); here --api-timeout 4."""
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    monkeypatch.setattr(kfp_api, "READ_TIMEOUT_S", 2.0)
    state.stall.set()
    started = time.monotonic()

    code = main(["submit", "--config", str(config_file), "--host", host, "--api-timeout", "4"])

    took = time.monotonic() - started
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"kfp-yolo: failed: the KFP API at {host} did not answer in time to "
                           "get or create the experiment 'kfp-yolo': waited ")
    assert "it is slow or stalled" in line and "--api-timeout" in line
    waited = float(line.split("waited ", 1)[1].split(" s", 1)[0])
    assert 3 <= waited <= 6 and took < 30
    assert kfp_api.API_TIMEOUT_S <= 120  # the default bound: "within 2 minutes"


def test_an_api_answering_slowly_still_submits(kfp_server, config_file, monkeypatch, capsys):
    """Every answer takes 20 s on a loaded server. Scaled by 1/5 here: 4 s answers, read
    timeout 12 s and deadline 22 s for the real 60 s and 110 s; the real defaults are checked to
    leave the same room. (Not 1/10: kfp's client parses the pipeline package inside the create
    call, about a second of this machine's CPU that does not scale with the answers.)"""
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    scale = 0.2
    monkeypatch.setattr(kfp_api, "READ_TIMEOUT_S", kfp_api.READ_TIMEOUT_S * scale)
    state.delay_s = 20 * scale

    code = main(["submit", "--config", str(config_file), "--host", host,
                 "--api-timeout", str(kfp_api.API_TIMEOUT_S * scale)])

    assert code == 0, capsys.readouterr().err
    assert len(state.created_runs()) == 1 and "submitted run" in capsys.readouterr().out
    calls = len(state.requests)  # healthz, experiment (look, create), runs (look, create)
    assert calls <= 5
    assert kfp_api.READ_TIMEOUT_S / scale > 20  # one 20 s answer fits a read timeout
    assert calls * 20 < kfp_api.API_TIMEOUT_S  # and all of them the deadline


def test_a_409_on_create_adopts_the_run_of_that_name(kfp_server, config_file, monkeypatch,
                                                    capsys):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    state.conflict = "adopt"  # another submit won the race

    assert main(["submit", "--config", str(config_file), "--host", host]) == 0
    (run,) = state.created_runs()
    assert f"adopted run {run['display_name']}: {run['run_id']} (409" in capsys.readouterr().out

    state.conflict = "lost"  # 409, yet no run of that name can be found
    code = main(["submit", "--config", str(config_file), "--host", host, "--set", "epochs=9"])
    err = capsys.readouterr().err
    assert code == 1 and "answered 409 (exists)" in err and "no run of that name" in err


def test_a_failed_last_run_is_never_a_silent_exit_0(kfp_server, config_file, monkeypatch,
                                                    capsys):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    state.states = ["RUNNING", "FAILED"]
    argv = ["submit", "--config", str(config_file), "--host", host]

    assert main([*argv, "--wait"]) == 1
    (first,) = state.created_runs()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"kfp-yolo: failed: run {first['run_id']} ended FAILED: {state.error_message}; "
                   "see it in the Kubeflow UI.")  # --wait shows the API's error message

    assert main(argv) == 1  # the same config again: not "already exists", exit 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"run {first['run_id']} ended FAILED: {state.error_message}" in err
    assert "pass --retry-failed" in err and len(state.created_runs()) == 1

    state.states = ["SUCCEEDED"]
    assert main([*argv, "--retry-failed"]) == 0
    assert "starting a new attempt (--retry-failed)" in capsys.readouterr().out
    assert len(state.created_runs()) == 2
    assert main(argv) == 0  # the newest attempt is the one that counts
    assert "already exists" in capsys.readouterr().out and len(state.created_runs()) == 2


def test_every_request_of_kfp_client_carries_the_budgets_timeouts(kfp_server, monkeypatch):
    """Contract with kfp 2.17's client (it passes no timeout to urllib3 itself): a call through
    kfp.Client ends at the budget's read timeout, not when the server answers."""
    state, host = kfp_server
    state.valid_tokens = None
    state.delay_s = 5.0
    monkeypatch.setattr(kfp_api, "READ_TIMEOUT_S", 1.0)
    api = kfp_api.Api(host, None, "team-a", kfp_api.Budget(total_s=1.5))
    started = time.monotonic()
    with pytest.raises(Fault, match="did not answer in time to list experiments"):
        api.call("list experiments", api.client.list_experiments)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("mode,warned", [(0o644, True), (0o640, True), (0o600, False)])
def test_token_file_open_to_others_gets_one_warning(kfp_server, config_file, tmp_path, capfd,
                                                    mode, warned):
    state, host = kfp_server
    state.valid_tokens = {OLD_TOKEN}
    token_file = _write(tmp_path / "token", OLD_TOKEN)
    token_file.chmod(mode)
    # --wait: the token is read again before every request, the warning is given once.
    assert main(["submit", "--config", str(config_file), "--host", host,
                 "--token-file", str(token_file), "--wait"]) == 0
    err = capfd.readouterr().err
    assert err.count("is readable by group or others") == (1 if warned else 0)
    if warned:
        assert f"(mode {mode:04o}); run `chmod 600 {token_file}`" in err
    assert OLD_TOKEN not in err


# from test_run_time_placement (unit lane): submit gives the run its service account
def test_submit_runs_the_steps_as_the_configured_service_account(kfp_server, tmp_path,
                                                                  monkeypatch):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    config = tmp_path / "run.yaml"
    config.write_text("name: nightly\nnamespace: team-a\nservice_account: kfp-yolo-pipeline\n")
    assert main(["submit", "--config", str(config), "--host", host]) == 0
    assert main(["submit", "--config", str(config), "--host", host,
                 "--set", "service_account="]) == 0
    first, second = state.created_runs()
    assert first["service_account"] == "kfp-yolo-pipeline"
    assert not second.get("service_account")  # the namespace's default account
