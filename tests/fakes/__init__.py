"""Loopback fakes of the SendGrid and Twilio HTTP APIs, driven by the real SDKs in tests.

Why: the channels' correctness depends on how the official SDKs build requests and map
errors, so tests run those SDKs unmodified against servers on 127.0.0.1 that check every
request against the documented API and answer as scripted (`Ok`, `Fail`, `Hang`).
"""

from .sendgrid import FakeSendGrid
from .server import Answer, Fail, FakeServer, Hang, Ok, Recorded
from .twilio import FakeTwilio

__all__ = ["Answer", "Fail", "FakeSendGrid", "FakeServer", "FakeTwilio", "Hang", "Ok", "Recorded"]
