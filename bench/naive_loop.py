"""The baseline for `postflow simulate` on the review project: the least a script must do.

Usage: python bench/naive_loop.py EVENTS_FILE OUT_FILE

It reads the same events with orjson, renders the review journey's templates (the very same
Jinja sources, see review_journey.py) and writes one JSON line per message (to, subject,
body): no validation, timers, records or compliance. Each review is matched to its order by
order_id in a dict, and the follow-up is picked as the journey's branch picks it (>= 4 thanks,
<= 2 sorry, else, and without a review, neutral). Comparing simulate with this says what the
engine's guarantees cost on top of the unavoidable parsing, rendering and writing.

The environment is plain Jinja with one change, shared with postflow: `a.b` on a dict looks
the key up first, so `trigger.data.items` is the order's list, not the `dict.items` method.
Each template is compiled once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jinja2
import orjson
from review_journey import ASK, NEUTRAL, SORRY, THANKS


class KeyFirstEnvironment(jinja2.Environment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def main() -> None:
    events_path, out_path = sys.argv[1:3]
    env = KeyFirstEnvironment()
    templates = {
        name: (env.from_string(subject), env.from_string(body))
        for name, (subject, body) in {
            "ask": ASK,
            "thanks": THANKS,
            "sorry": SORRY,
            "neutral": NEUTRAL,
        }.items()
    }
    orders: list[dict[str, Any]] = []
    reviews: dict[str, dict[str, Any]] = {}
    with open(events_path, "rb") as f:
        for line in f:
            event = orjson.loads(line)
            if event["type"] == "order_delivered":
                orders.append(event)
            elif event["type"] == "review_submitted":
                reviews[event["data"]["order_id"]] = event
    with Path(out_path).open("wb") as out:
        for trigger in orders:
            customer = trigger["customer"]
            last_event = reviews.get(trigger["data"]["order_id"], trigger)
            rating = last_event["data"].get("rating")
            if rating is not None and rating >= 4:
                follow_up = "thanks"
            elif rating is not None and rating <= 2:
                follow_up = "sorry"
            else:
                follow_up = "neutral"
            scope = {"customer": customer, "trigger": trigger, "last_event": last_event}
            for name in ("ask", follow_up):
                subject, body = templates[name]
                message = {
                    "to": customer["email"],
                    "subject": subject.render(scope),
                    "body": body.render(scope),
                }
                out.write(orjson.dumps(message) + b"\n")


if __name__ == "__main__":
    main()
