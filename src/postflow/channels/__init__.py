"""Channels deliver what the engine decided: the dispatcher hands each outbox message to one.

The engine stays pure and the dispatcher provider-agnostic; everything provider-specific
(credentials, wire formats, which errors are worth a retry) lives behind :class:`Channel`.
"""

from __future__ import annotations

from postflow.channels.base import Channel, ChannelConfigError, Delivery
from postflow.channels.console import ConsoleChannel
from postflow.channels.file import FileChannel
from postflow.channels.registry import build_channels, close_channels, describe

__all__ = [
    "Channel",
    "ChannelConfigError",
    "ConsoleChannel",
    "Delivery",
    "FileChannel",
    "build_channels",
    "close_channels",
    "describe",
]
