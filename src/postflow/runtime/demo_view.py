"""What ``postflow demo`` shows: a live board on a terminal, plain lines elsewhere, a summary.

Two feeds come in. Messages arrive from the demo's channel as the dispatcher hands them over
(:meth:`Board.delivered`, on a dispatcher thread); everything else (entries, skipped
messages with their reasons, exits, goals) comes from the records the daemon wrote to the
database (:meth:`Board.record`). The board keeps the counts per journey and the recent lines;
:func:`render_board` draws it with rich (header with the simulated date and progress,
messages going out, a table per journey, skipped messages and why), :func:`summary_table`
and :func:`summary_text` give the final counts, computed from the database's records.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from postflow import durations
from postflow.effects import OutboundMessage

CHANNEL_STYLE = {"email": "cyan", "sms": "green", "webhook": "magenta"}
REASON_STYLE = {"no_consent": "yellow", "frequency_cap": "blue", "suppressed": "red"}


# -- counts ----------------------------------------------------------------------------------
@dataclass
class JourneyTally:
    """One journey's records, counted."""

    entered: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # by channel
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    failed: Counter[str] = field(default_factory=Counter)  # by reason
    exits: Counter[str] = field(default_factory=Counter)  # by reason
    goals: int = 0

    def add(self, record: Mapping[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "enter":
            self.entered += 1
        elif kind == "message":
            status = record.get("status")
            if status == "sent":
                self.sent[str(record.get("channel"))] += 1
            elif status == "skipped":
                self.skipped[str(record.get("reason"))] += 1
            else:
                self.failed[str(record.get("reason"))] += 1
        elif kind == "exit":
            self.exits[str(record.get("reason"))] += 1
        elif kind == "goal":
            self.goals += 1

    @property
    def messages_sent(self) -> int:
        return sum(self.sent.values())


def tally(
    records: Iterable[Mapping[str, Any]], journeys: Iterable[str] = ()
) -> dict[str, JourneyTally]:
    """Counts per journey, for every journey named (even without records) and every journey
    that has records, sorted by journey id."""
    counts: dict[str, JourneyTally] = {j: JourneyTally() for j in journeys}
    for record in records:
        counts.setdefault(str(record["journey"]), JourneyTally()).add(record)
    return dict(sorted(counts.items()))


# -- people ----------------------------------------------------------------------------------
class People:
    """Customers' display names and time zones, so times read as the customer's own."""

    def __init__(self, profiles: Mapping[str, Mapping[str, Any]], default_zone: str = "UTC"):
        self.default = _zone(default_zone) or ZoneInfo("UTC")
        self.names: dict[str, str] = {}
        self.zones: dict[str, ZoneInfo] = {}
        for cid, profile in profiles.items():
            first = profile.get("first_name")
            last = profile.get("last_name")
            if isinstance(first, str) and first:
                initial = f" {last[0]}." if isinstance(last, str) and last else ""
                self.names[cid] = f"{first}{initial}"
            zone = _zone(profile.get("timezone"))
            if zone is not None:
                self.zones[cid] = zone

    def name(self, customer_id: str) -> str:
        return self.names.get(customer_id, customer_id)

    def local(self, customer_id: str, at: int) -> datetime:
        return datetime.fromtimestamp(at / 1e6, UTC).astimezone(
            self.zones.get(customer_id, self.default)
        )


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str):
        return None
    try:
        return durations.load_zone(name)
    except Exception:
        return None


def _parse_at(value: Any) -> int:
    """A record's ``at``: epoch microseconds as stored, or the printed form."""
    if isinstance(value, int):
        return value
    try:
        return durations.parse_instant(str(value))
    except Exception:
        return 0


# -- lines -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """A message that went out (``reason`` None) or was skipped or failed."""

    at: int
    customer_id: str
    journey: str
    step: str
    channel: str
    to: str
    title: str
    reason: str | None = None
    transactional: bool = False
    status: str = "sent"

    @classmethod
    def of_message(cls, m: OutboundMessage) -> Line:
        if m.channel == "email":
            title = m.subject or ""
        elif m.channel == "webhook":
            title = f"{m.method or 'POST'} {m.to}"
        else:
            title = m.text or m.html or ""
        return cls(
            m.at,
            m.customer_id,
            m.journey,
            m.step,
            m.channel,
            m.to,
            _first_line(title),
            None,
            m.transactional,
        )

    @classmethod
    def of_record(cls, r: Mapping[str, Any]) -> Line:
        return cls(
            _parse_at(r.get("at")),
            str(r.get("customer_id", "")),
            str(r.get("journey", "")),
            str(r.get("step", "")),
            str(r.get("channel", "")),
            str(r.get("to", "")),
            _first_line(str(r.get("subject") or r.get("body") or "")),
            str(r.get("reason") or r.get("status") or "skipped"),
            status=str(r.get("status") or "skipped"),
        )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def plain_line(line: Line, people: People) -> str:
    """One line of the plain output."""
    when = people.local(line.customer_id, line.at).strftime("%Y-%m-%d %H:%M %Z")
    who = people.name(line.customer_id)
    where = f"{line.journey}/{line.step}"
    if line.reason is not None:
        return f"{when}  {who}  {where}  {line.channel} {line.status}: {line.reason}"
    to = f" → {line.to}" if line.channel != "webhook" else ""
    title = f"  {line.title}" if line.title else ""
    return f"{when}  {who}  {where}  {line.channel}{to}{title}"


# -- the board -------------------------------------------------------------------------------
class Board:
    """What the live view and the plain output draw from. ``delivered`` may be called from
    any thread; the rest from the thread that draws."""

    def __init__(
        self,
        people: People,
        journeys: Iterable[str],
        start: int,
        end: int,
        *,
        title: str = "postflow demo",
        customers: int = 0,
        plain: TextIO | None = None,
        keep: int = 200,
    ) -> None:
        self.people = people
        self.tallies = tally((), journeys)
        self.start = start
        self.end = end
        self.now = start
        self.title = title
        self.customers = customers
        self.plain = plain
        self._lock = threading.Lock()
        self._sent: deque[Line] = deque(maxlen=keep)
        self._skipped: deque[Line] = deque(maxlen=keep)
        self.delivered_count = 0

    def delivered(self, message: OutboundMessage) -> None:
        line = Line.of_message(message)
        with self._lock:
            self._sent.append(line)
            self.delivered_count += 1
            if self.plain is not None:
                self._write(plain_line(line, self.people))

    def record(self, record: Mapping[str, Any]) -> None:
        self.tallies.setdefault(str(record["journey"]), JourneyTally()).add(record)
        if record.get("kind") == "message" and record.get("status") != "sent":
            line = Line.of_record(record)
            with self._lock:
                self._skipped.append(line)
                if self.plain is not None:
                    self._write(plain_line(line, self.people))

    def _write(self, text: str) -> None:
        assert self.plain is not None
        try:
            self.plain.write(text + "\n")
            self.plain.flush()
        except (OSError, ValueError):  # a closed pipe: the demo goes on
            pass

    def recent(self) -> tuple[list[Line], list[Line]]:
        with self._lock:
            return list(self._sent), list(self._skipped)

    @property
    def totals(self) -> tuple[int, int]:
        sent = sum(t.messages_sent for t in self.tallies.values())
        skipped = sum(
            sum(t.skipped.values()) + sum(t.failed.values()) for t in self.tallies.values()
        )
        return sent, skipped


# -- rendering -------------------------------------------------------------------------------
SIDE_WIDTH = 50
HEADER = 3


def render_board(board: Board, height: int) -> RenderableType:
    """The live view, ``height`` lines high (at least 16) and as wide as the console."""
    return _BoardView(board, max(height, 16))


class _BoardView:
    """Laid out when drawn, when the width is known: the side column takes its natural
    width on a wide terminal and two fifths of a narrow one."""

    def __init__(self, board: Board, height: int) -> None:
        self.board = board
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        board, height = self.board, self.height
        sent, skipped = board.recent()
        side = min(SIDE_WIDTH, max(options.max_width * 2 // 5, 30))
        body = height - HEADER
        table_height = min(len(board.tallies) + 4, max(body - 6, 5))
        layout = Layout(name="root")
        layout.split_column(
            Layout(_header(board), name="header", size=HEADER),
            Layout(name="body"),
        )
        layout["body"].split_row(
            Layout(_messages(board, sent, body - 2), name="messages"),
            Layout(name="side", size=side),
        )
        layout["side"].split_column(
            Layout(_journeys(board, table_height), name="journeys", size=table_height),
            Layout(_skipped(board, skipped, body - table_height - 2), name="skipped"),
        )
        yield from console.render(layout, options.update(height=height))


def _header(board: Board) -> Panel:
    now = datetime.fromtimestamp(board.now / 1e6, UTC)
    span = max(board.end - board.start, 1)
    done = min(max(board.now - board.start, 0), span)
    day = done / 86_400_000_000
    sent, skipped = board.totals
    grid = Table.grid(expand=True, padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_row(
        Text(now.strftime("%a %Y-%m-%d %H:%M UTC"), style="bold"),
        Text(f"day {day:4.1f} of {span / 86_400_000_000:.0f}"),
        ProgressBar(total=span, completed=done),
        Text(f"{sent} sent · {skipped} skipped · {board.customers} customers"),
    )
    return Panel(grid, title=f"[bold]{board.title}[/]", title_align="left", box=box.ROUNDED)


def _when(board: Board, line: Line) -> str:
    return board.people.local(line.customer_id, line.at).strftime("%b %d %H:%M")


def _messages(board: Board, lines: list[Line], rows: int) -> Panel:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True, max_width=12, overflow="ellipsis")
    table.add_column(no_wrap=True, style="bold", max_width=22, overflow="ellipsis")
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, ratio=1, min_width=16, overflow="ellipsis")
    # The newest, in time order (a batch of customers is dispatched customer by customer).
    shown = sorted(lines[-rows:], key=lambda line: line.at) if rows > 0 else []
    for line in shown:
        channel = Text(line.channel, style=CHANNEL_STYLE.get(line.channel, ""))
        title = Text(line.title)
        if line.transactional:
            title.stylize("dim")
        table.add_row(
            _when(board, line), board.people.name(line.customer_id), line.journey, channel, title
        )
    subtitle = f"{board.delivered_count} delivered to the demo channel; nothing leaves"
    content: RenderableType = table if shown else Text("waiting for the first message…", "dim")
    return Panel(
        content,
        title="[bold]messages going out[/] [dim](the customer's local time)[/]",
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        box=box.ROUNDED,
    )


def _journeys(board: Board, height: int) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, padding=0, expand=True, show_edge=False)
    table.add_column("journey", no_wrap=True, overflow="ellipsis", ratio=1)
    for name in ("in", "sent", "skip", "exits"):
        table.add_column(name, justify="right", no_wrap=True, min_width=5)
    items = list(board.tallies.items())
    room = max(height - 4, 1)
    if len(items) > room:  # the busiest first when the terminal is short
        items = sorted(items, key=lambda kv: -kv[1].entered)[:room]
    for journey, t in items:
        style = "" if t.entered or t.messages_sent else "dim"
        table.add_row(
            journey,
            str(t.entered),
            str(t.messages_sent),
            str(sum(t.skipped.values()) + sum(t.failed.values())),
            str(sum(t.exits.values())),
            style=style,
        )
    return Panel(table, title="[bold]journeys[/]", title_align="left", box=box.ROUNDED)


def _skipped(board: Board, lines: list[Line], rows: int) -> Panel:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True, ratio=1, overflow="ellipsis")
    table.add_column(no_wrap=True, style="dim")
    table.add_column(no_wrap=True)
    shown = sorted(lines[-rows:], key=lambda line: line.at) if rows > 0 else []
    for line in shown:
        when = board.people.local(line.customer_id, line.at).strftime("%b %d")
        reason = Text(line.reason or "", style=REASON_STYLE.get(line.reason or "", "yellow"))
        table.add_row(when, line.journey, line.channel, reason)
    content: RenderableType = table if shown else Text("nothing skipped yet", "dim")
    return Panel(content, title="[bold]skipped, and why[/]", title_align="left", box=box.ROUNDED)


# -- the summary -----------------------------------------------------------------------------
def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "-"


def summary_rows(tallies: Mapping[str, JourneyTally]) -> Iterator[tuple[str, ...]]:
    for journey, t in tallies.items():
        failed = f"; failed {_counts(t.failed)}" if t.failed else ""
        yield (
            journey,
            str(t.entered),
            _counts(t.sent),
            _counts(t.skipped) + failed,
            _counts(t.exits),
            str(t.goals),
        )


SUMMARY_COLUMNS = ("journey", "entered", "sent", "skipped", "exits", "goals")


def summary_table(tallies: Mapping[str, JourneyTally], title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for name in SUMMARY_COLUMNS:
        table.add_column(name, justify="right" if name in ("entered", "goals") else "left")
    for row in summary_rows(tallies):
        table.add_row(*row, style="" if row[2] != "-" else "dim")
    return table


def silent(
    tallies: Mapping[str, JourneyTally], senders: Collection[str] | None = None
) -> list[str]:
    """Journeys that sent nothing, of those that can (``senders``: the journeys with an
    email or SMS step; None: all)."""
    return [
        j for j, t in tallies.items() if not t.messages_sent and (senders is None or j in senders)
    ]


def summary_text(
    tallies: Mapping[str, JourneyTally], title: str, senders: Collection[str] | None = None
) -> str:
    lines = ["", title]
    for journey, entered, sent, skipped, exits, goals in summary_rows(tallies):
        lines.append(
            f"  {journey}: entered {entered}; sent {sent}; skipped {skipped}; "
            f"exits {exits}; goals {goals}"
        )
    quiet = silent(tallies, senders)
    if quiet:
        lines.append(f"No message from: {', '.join(quiet)}")
    return "\n".join(lines)


def summary_renderable(
    tallies: Mapping[str, JourneyTally], title: str, senders: Collection[str] | None = None
) -> RenderableType:
    quiet = silent(tallies, senders)
    parts: list[RenderableType] = [summary_table(tallies, title)]
    if quiet:
        parts.append(Text(f"No message from: {', '.join(quiet)}", style="yellow"))
    return Group(*parts)
