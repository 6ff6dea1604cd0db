"""What the engine consults besides the customer: journeys, settings, and two lookups.

The engine is pure, so everything it reads that is not the customer's own state comes through
here. Two things are asked of a store, each as a small :class:`typing.Protocol` so that the
in-memory store of ``simulate`` and the SQL store of the daemon plug in alike:

- :class:`JourneyVersions`: a journey version an instance is pinned to but that is not among
  the journeys loaded now (the daemon keeps every deployed version's source in its database).
- :class:`SuppressionLookup`: whether an address is suppressed at a logical time. Suppression
  is a fact of an address over time (contract section 2), the only thing customers share, so
  customers can be processed in any order, by any number of workers, and decide alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from postflow.config import Settings
from postflow.expressions import Helpers
from postflow.machine import Machine
from postflow.state import Instance


class JourneyVersions(Protocol):
    """Finds a compiled journey version by (journey id, version hash), else None."""

    def load_version(self, journey: str, version: str) -> Machine | None: ...


class SuppressionLookup(Protocol):
    """The suppression reasons in force for a normalised address at logical time ``at``: the
    result of every change with ``at`` <= the given time, in ingestion order."""

    def reasons_at(self, address: str, at: int) -> frozenset[str]: ...


class _NoSuppressions:
    def reasons_at(self, address: str, at: int) -> frozenset[str]:
        return frozenset()


NO_SUPPRESSIONS: SuppressionLookup = _NoSuppressions()


@dataclass(frozen=True)
class World:
    """Compiled journeys and settings.

    ``machines`` maps a journey id to its newest version (new entries take it); ``versions``
    holds every version given, so instances stay pinned to the one they entered with. A pinned
    version that is in neither is asked of ``archive``; when nobody has it the engine ends the
    instance with reason ``error`` rather than run it on another version.
    """

    machines: Mapping[str, Machine]
    settings: Settings
    versions: Mapping[tuple[str, str], Machine] = field(default_factory=dict)
    by_event: Mapping[str, tuple[Machine, ...]] = field(default_factory=dict)
    cap_horizon: int = 0  # the longest frequency-cap window: older send history is dropped
    uses_history: bool = False  # some journey version calls a history function: stores load it
    local_audience: tuple[Machine, ...] = ()  # timezone: customer audience journeys
    tick_audience: tuple[Machine, ...] = ()  # audience journeys whose cron ticks are stored
    archive: JourneyVersions | None = None
    _archived: dict[tuple[str, str], Machine | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    _helpers: dict[Any, Helpers] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        machines: Mapping[str, Machine],
        settings: Settings,
        *,
        older: Iterable[Machine] = (),
        archive: JourneyVersions | None = None,
    ) -> World:
        """``machines``: the journeys loaded now; ``older``: earlier versions still wanted by
        instances in flight; ``archive``: where to look up any other pinned version."""
        ordered = sorted(machines.values(), key=lambda m: m.id)
        by_event: dict[str, list[Machine]] = {}
        for m in ordered:
            if m.trigger.event is not None:
                by_event.setdefault(m.trigger.event, []).append(m)
        versions = {(m.id, m.version): m for m in older}
        versions.update({(m.id, m.version): m for m in ordered})
        return cls(
            machines=dict(machines),
            settings=settings,
            versions=versions,
            by_event={k: tuple(v) for k, v in by_event.items()},
            cap_horizon=max(
                (
                    *(limit.per for limit in settings.limits.values()),
                    *(lim.per for tag in settings.tag_limits.values() for lim in tag.values()),
                ),
                default=0,
            ),
            archive=archive,
            uses_history=any(m.uses_history for m in versions.values()),
            local_audience=tuple(m for m in ordered if m.trigger.local),
            tick_audience=tuple(
                m for m in ordered if m.trigger.schedule is not None and not m.trigger.local
            ),
        )

    def helpers_for(self, zone: Any) -> Helpers:
        """What expression helpers need for a customer in ``zone``: one value per zone,
        shared by every input (it holds only the zone and the catalog)."""
        found = self._helpers.get(zone)
        if found is None:
            found = self._helpers[zone] = Helpers(
                zone,
                self.settings.catalog,
                self.settings.purchase_event,
                self.settings.history_keep,
            )
        return found

    def machine_of(self, instance: Instance) -> Machine | None:
        """The exact version ``instance`` is pinned to, or None when it cannot be had."""
        key = (instance.journey, instance.version)
        machine = self.versions.get(key)
        if machine is not None or self.archive is None:
            return machine
        if key not in self._archived:
            self._archived[key] = self.archive.load_version(*key)
        return self._archived[key]
