"""Channels: the console and file providers, and resolving ``channels:`` into them."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from postflow import config, durations
from postflow.channels import (
    ChannelConfigError,
    ConsoleChannel,
    Delivery,
    FileChannel,
    build_channels,
    close_channels,
    describe,
)
from postflow.effects import OutboundMessage

AT = durations.parse_instant("2027-01-13T15:00:00Z")


def email(n: int = 1, **changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": f"c1:review-request:1:m{n}",
        "customer_id": "c1",
        "instance": "c1:review-request:1",
        "journey": "review-request",
        "step": "ask",
        "channel": "email",
        "at": AT,
        "to": "ann@example.com",
        "subject": "How was your tea?",
        "html": "<p>Hi Ann,</p>",
        "text": "Hi Ann,\n\nTell us how it was.",
    }
    fields.update(changes)
    return OutboundMessage(**fields)


def sms(**changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "channel": "sms",
        "to": "+15555550100",
        "subject": None,
        "html": None,
        "text": "Your tea shipped. Reply STOP to opt out.",
        "step": "shipped",
    }
    fields.update(changes)
    return email(**fields)


def webhook(**changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "channel": "webhook",
        "to": "https://hooks.example.com/review",
        "subject": None,
        "html": None,
        "text": None,
        "step": "notify",
        "transactional": True,
        "method": "POST",
        "json": {"customer": "c1", "rating": 5},
        "headers": (("X-Shop", "tea"), ("Authorization", "Bearer s3cret")),
    }
    fields.update(changes)
    return email(**fields)


def settings_for(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "postflow.yaml"
    path.write_text(text, encoding="utf-8")
    return config.load_settings(path)


# --- Delivery ----------------------------------------------------------------------------


def test_delivery_defaults_and_is_frozen() -> None:
    delivery = Delivery("retry", "sendgrid", error="429 Too Many Requests", retry_after=30.0)
    assert delivery.provider_id is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        delivery.status = "sent"  # type: ignore[misc]


# --- console ------------------------------------------------------------------------------


def test_console_prints_an_email_as_one_readable_block() -> None:
    stream = io.StringIO()
    delivery = ConsoleChannel(stream).send(email())
    assert delivery == Delivery("sent", "console", provider_id="c1:review-request:1:m1")
    assert stream.getvalue() == (
        "── email → ann@example.com · review-request/ask · 2027-01-13T15:00:00Z\n"
        "  Subject: How was your tea?\n"
        "  [+ HTML part, 14 characters]\n"
        "\n"
        "  Hi Ann,\n"
        "\n"
        "  Tell us how it was.\n"
    )


def test_console_email_falls_back_to_html_and_shows_a_sendgrid_template() -> None:
    stream = io.StringIO()
    channel = ConsoleChannel(stream)
    channel.send(email(text=None, transactional=True))
    channel.send(
        email(
            subject=None,
            text=None,
            html=None,
            sendgrid_template_id="d-123",
            template_data={"name": "Ann"},
        )
    )
    out = stream.getvalue()
    assert "review-request/ask · 2027-01-13T15:00:00Z · transactional\n" in out
    assert "  <p>Hi Ann,</p>\n" in out
    assert '  Template: d-123\n  {\n    "name": "Ann"\n  }\n' in out


def test_console_prints_an_sms_body() -> None:
    stream = io.StringIO()
    ConsoleChannel(stream).send(sms())
    assert stream.getvalue() == (
        "── sms → +15555550100 · review-request/shipped · 2027-01-13T15:00:00Z\n"
        "  Your tea shipped. Reply STOP to opt out.\n"
    )


def test_console_prints_a_webhook_call_and_masks_credentials() -> None:
    stream = io.StringIO()
    delivery = ConsoleChannel(stream).send(webhook())
    assert delivery.status == "sent"
    assert stream.getvalue() == (
        "── webhook → https://hooks.example.com/review · review-request/notify"
        " · 2027-01-13T15:00:00Z\n"
        "  POST https://hooks.example.com/review\n"
        "  X-Shop: tea\n"
        "  Authorization: [masked]\n"
        "  {\n"
        '    "customer": "c1",\n'
        '    "rating": 5\n'
        "  }\n"
    )


def test_console_writes_through_a_real_pipe_flushed_and_plain() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w", encoding="utf-8") as writer:
        channel = ConsoleChannel(writer)
        assert channel.send(sms()).status == "sent"
        # Flushed: readable while the writer is still open.
        data = os.read(read_fd, 65536).decode("utf-8")
    os.close(read_fd)
    assert data.startswith("── sms → +15555550100")
    assert "\x1b[" not in data


def test_console_colours_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    forced = io.StringIO()
    ConsoleChannel(forced, color=True).send(email())
    assert "\x1b[" in forced.getvalue() and "Subject: How was your tea?" in forced.getvalue()

    master, slave = os.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as tty:
        ConsoleChannel(tty).send(sms())
        data = os.read(master, 65536).decode("utf-8")
    os.close(master)
    assert "\x1b[" in data and "Your tea shipped." in data

    monkeypatch.setenv("NO_COLOR", "1")
    master, slave = os.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as tty:
        ConsoleChannel(tty).send(sms())
        data = os.read(master, 65536).decode("utf-8")
    os.close(master)
    assert "\x1b[" not in data


def test_console_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleChannel().send(sms())
    assert capsys.readouterr().out.startswith("── sms → +15555550100")


def test_console_blocks_from_threads_never_mix() -> None:
    stream = io.StringIO()
    channel = ConsoleChannel(stream)
    messages = [email(n, text=f"body {n}\n" * 50) for n in range(200)]
    run_in_threads(channel.send, messages)
    blocks = stream.getvalue().split("── ")[1:]
    assert len(blocks) == 200
    for block in blocks:
        bodies = {line for line in block.splitlines() if line.startswith("  body ")}
        assert len(bodies) == 1 and block.count("  body ") == 50


def test_console_on_a_closed_stream_fails_the_message() -> None:
    stream = io.StringIO()
    stream.close()
    delivery = ConsoleChannel(stream).send(sms())
    assert delivery.status == "failed" and delivery.error


# --- file ---------------------------------------------------------------------------------


def test_file_appends_one_object_per_message_without_nones(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text('{"earlier": true}\n', encoding="utf-8")
    channel = FileChannel(path)
    assert channel.send(email()) == Delivery("sent", "file", provider_id=email().message_id)
    assert channel.send(webhook()).status == "sent"
    channel.close()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"earlier": True}
    assert lines[1] == {
        "message_id": "c1:review-request:1:m1",
        "customer_id": "c1",
        "journey": "review-request",
        "instance": "c1:review-request:1",
        "step": "ask",
        "channel": "email",
        "at": "2027-01-13T15:00:00Z",
        "to": "ann@example.com",
        "transactional": False,
        "subject": "How was your tea?",
        "text": "Hi Ann,\n\nTell us how it was.",
        "html": "<p>Hi Ann,</p>",
    }
    assert lines[2]["method"] == "POST"
    assert lines[2]["json"] == {"customer": "c1", "rating": 5}
    assert lines[2]["headers"] == [["X-Shop", "tea"], ["Authorization", "Bearer s3cret"]]
    assert "subject" not in lines[2] and "text" not in lines[2]


def test_file_lines_from_threads_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    channel = FileChannel(path)
    # Bodies far beyond PIPE_BUF and any stdio buffer, so a split write would show.
    messages = [email(n, html="x" * (n * 997)) for n in range(200)]
    results = run_in_threads(channel.send, messages)
    channel.close()
    assert all(r.status == "sent" for r in results)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    ids = [json.loads(line)["message_id"] for line in lines[:-1]]
    assert sorted(ids) == sorted(m.message_id for m in messages)


def test_file_rejects_unusable_paths_when_built(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "adir").mkdir()
    for path in (tmp_path / "afile" / "outbox.jsonl", tmp_path / "missing" / "outbox.jsonl"):
        with pytest.raises(ChannelConfigError, match=str(path)):
            FileChannel(path)
    with pytest.raises(ChannelConfigError, match="Is a directory"):
        FileChannel(tmp_path / "adir")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_file_full_disk_is_transient() -> None:
    delivery = FileChannel("/dev/full").send(email())
    assert delivery.status == "retry"
    assert delivery.error == "ENOSPC No space left on device"


def test_file_problems_at_run_time_are_permanent_and_recoverable(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    channel = FileChannel(path)
    assert channel.send(email(1)).status == "sent"
    channel.close()
    path.unlink()
    path.mkdir()  # replaced under us by a directory
    delivery = channel.send(email(2))
    assert delivery.status == "failed" and (delivery.error or "").startswith("EISDIR ")
    path.rmdir()
    assert channel.send(email(3)).status == "sent"  # reopened once the path works again
    channel.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["message_id"] for line in lines] == [email(3).message_id]


# --- registry -----------------------------------------------------------------------------


def test_auto_without_credentials_resolves_to_one_shared_console(tmp_path: Path) -> None:
    for text in ("timezone: UTC\n", "channels: {email: {provider: auto}, sms: {}}\n"):
        settings = settings_for(tmp_path, text)
        for env in ({}, {"SENDGRID_API_KEY": "", "TWILIO_ACCOUNT_SID": "AC1"}):
            assert describe(settings, env) == {
                "email": "console",
                "sms": "console",
                "webhook": "console",
            }
        stream = io.StringIO()
        channels = build_channels(settings, console_stream=stream, environ={})
        assert channels["email"] is channels["sms"] is channels["webhook"]
        assert isinstance(channels["email"], ConsoleChannel)
        channels["sms"].send(sms())
        assert "── sms → +15555550100" in stream.getvalue()
        close_channels(channels.values())


def test_auto_with_credentials_picks_the_providers(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        'channels: {email: {from: "Shop <hi@shop.example>"}, sms: {from: "+15555550100"}}\n',
    )
    env = {"SENDGRID_API_KEY": "SG.x", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}
    assert describe(settings, env) == {"email": "sendgrid", "sms": "twilio", "webhook": "http"}
    channels = build_channels(settings, environ=env)
    assert [channels[n].name for n in ("email", "sms", "webhook")] == [
        "sendgrid",
        "twilio",
        "webhook",
    ]
    close_channels(channels.values())


def test_a_provider_needs_a_sender_and_a_readable_one(tmp_path: Path) -> None:
    env = {"SENDGRID_API_KEY": "SG.x", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}
    with pytest.raises(ChannelConfigError) as caught:
        describe(settings_for(tmp_path, "timezone: UTC\n"), env)
    assert str(caught.value).splitlines() == [
        "channels.email.from is not set: SendGrid needs a sender address",
        "channels.sms.from (or messaging_service_sid) is not set: Twilio needs a sender",
    ]
    bad = settings_for(tmp_path, 'channels: {email: {from: "Shop", reply_to: "x@y.z"}}\n')
    with pytest.raises(ChannelConfigError, match=r"channels.email.from: 'Shop' is not an email"):
        build_channels(bad, environ=env)


def test_webhooks_are_called_in_a_deployment_or_when_asked(tmp_path: Path) -> None:
    twilio = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}
    deployed = settings_for(tmp_path, 'channels: {sms: {from: "+15005550006"}}\n')
    assert describe(deployed, twilio)["webhook"] == "http"
    assert describe(deployed, {})["webhook"] == "console"
    asked = settings_for(tmp_path, "channels: {webhook: {provider: http}}\n")
    assert describe(asked, {})["webhook"] == "http"


def test_webhooks_can_be_printed_or_written_instead_of_called(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "channels: {webhook: {provider: console}}\n")
    stream = io.StringIO()
    channels = build_channels(settings, console_stream=stream, environ={})
    channels["webhook"].send(webhook())
    assert "POST https://hooks.example.com/review" in stream.getvalue()
    close_channels(channels.values())
    settings = settings_for(tmp_path, "channels: {webhook: {provider: file, path: hooks.jsonl}}\n")
    assert describe(settings, {})["webhook"] == "file"


def test_file_paths_are_relative_to_the_config_and_shared_per_path(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "out").mkdir(parents=True)
    settings = settings_for(
        project,
        "channels:\n"
        "  email: {provider: file, path: out/messages.jsonl}\n"
        "  sms: {provider: file, path: out/../out/messages.jsonl}\n"
        "  webhook: {provider: console}\n",
    )
    assert describe(settings, {}) == {"email": "file", "sms": "file", "webhook": "console"}
    stream = io.StringIO()
    channels = build_channels(settings, console_stream=stream, environ={})
    assert channels["email"] is channels["sms"]
    assert isinstance(channels["email"], FileChannel)
    assert channels["email"].path == project / "out" / "messages.jsonl"
    channels["email"].send(email())
    channels["sms"].send(sms())
    channels["webhook"].send(webhook())
    close_channels(channels.values())
    written = (project / "out" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["channel"] for line in written] == ["email", "sms"]
    assert stream.getvalue().startswith("── webhook → ")


def test_mixed_providers_and_the_default_file(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        "channels:\n  email: {provider: console}\n  sms: {provider: file}\n"
        "  webhook: {provider: console}\n",
    )
    channels = build_channels(settings, console_stream=io.StringIO(), environ={})
    assert channels["email"] is channels["webhook"]
    sms_channel = channels["sms"]
    assert isinstance(sms_channel, FileChannel)
    assert sms_channel.path == tmp_path / "outbox.jsonl"
    close_channels(channels.values())


def test_an_unusable_file_path_names_the_setting(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, "channels: {email: {provider: file, path: nowhere/outbox.jsonl}}\n"
    )
    assert describe(settings, {})["email"] == "file"  # describe opens nothing
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(settings, environ={})
    message = str(caught.value)
    assert message.startswith("channels.email.path: cannot open ")
    assert str(tmp_path / "nowhere" / "outbox.jsonl") in message


def test_sendgrid_without_its_key_names_the_variable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "channels: {email: {provider: sendgrid}}\n")
    for env in ({}, {"SENDGRID_API_KEY": ""}):
        with pytest.raises(ChannelConfigError) as caught:
            build_channels(settings, environ=env)
        assert str(caught.value) == (
            "channels.email.provider is sendgrid, but SENDGRID_API_KEY is not set"
        )


def test_twilio_names_each_missing_variable_and_all_problems_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(
        tmp_path, "channels: {email: {provider: sendgrid}, sms: {provider: twilio}}\n"
    )
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC123")
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(settings)  # reads os.environ
    assert str(caught.value).splitlines() == [
        "channels.email.provider is sendgrid, but SENDGRID_API_KEY is not set",
        "channels.sms.provider is twilio, but TWILIO_AUTH_TOKEN is not set",
    ]
    with pytest.raises(ChannelConfigError, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are"):
        describe(settings_for(tmp_path, "channels: {sms: {provider: twilio}}\n"), {})


# --- helpers ------------------------------------------------------------------------------


def run_in_threads(send: Any, messages: list[OutboundMessage], threads: int = 8) -> list[Any]:
    """Send ``messages`` from ``threads`` threads released together; results in order."""
    results: list[Any] = [None] * len(messages)
    barrier = threading.Barrier(threads)

    def work(offset: int) -> None:
        barrier.wait()
        for index in range(offset, len(messages), threads):
            results[index] = send(messages[index])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results
