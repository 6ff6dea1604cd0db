"""The contract's own examples, verbatim: section 2's journey and section 7's test file."""

JOURNEY = """\
id: review-request                  # required, ^[a-z][a-z0-9_-]*$, unique across all journeys
name: Review request after delivery # optional
description: optional text
trigger:
  event: order_delivered            # an event type starts an instance ...
  if: "event.data.total > 0"        # ... when this optional condition holds
entry:
  key: "trigger.data.order_id"      # expression; default: the customer id
  reentry: never                    # never | after_exit (default) | always
  cooldown: 30d                     # optional: min time between two entries of one customer
exit:                               # leave at once, from any step, when ...
  - event: order_placed             # ... this event arrives for the customer
    if: "event.data.order_id != trigger.data.order_id"   # optional
goal:                               # conversion, for analytics only (does not exit)
  event: order_placed
  within: 14d                       # counted from entry
settings:
  quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}   # in the customer's timezone
steps:
  - id: wait_3d
    wait: 3d
  - id: ask
    email:
      subject: "How is your {{ trigger.data.items[0].name }}, {{ customer.first_name }}?"
      template: review_request      # templates/review_request.html (+ .txt if present)
  - id: await_review
    wait_for: {event: review_submitted, timeout: 7d, on_timeout: remind,
               if: "event.data.order_id == trigger.data.order_id"}
  - id: by_rating
    branch:
      - if: "last_event.data.rating >= 4"
        goto: thanks
      - goto: end                   # an entry without `if` is the default
  - id: remind
    sms: {body: "Got a minute to review order {{ trigger.data.order_id }}?"}
    next: end
  - id: thanks
    email: {subject: "Thank you!", body: "Thanks for the {{ last_event.data.rating }} stars."}
"""

TEST_FILE = """\
journeys: [review-request]          # optional; default: every journey of the config
config: {limits: {email: {max: 3, per: 1d}}}   # optional overrides of postflow.yaml
cases:
  - name: five stars get a thank-you
    start: "2027-01-10T12:00:00Z"   # event and expectation times may be `+DURATION` from here
    customer: {email: ann@example.com, first_name: Ann, timezone: Europe/Berlin}  # optional
    events:                         # inline list, or a path to a JSON Lines file
      - {type: order_delivered, customer_id: c1,                            # at: +0s
         data: {order_id: o1, total: 20, items: [{name: Tea}]}}
      - {type: review_submitted, customer_id: c1, at: "+4d", data: {order_id: o1, rating: 5}}
    until: "+30d"                   # optional: simulate up to here (default: until nothing is due)
    expect:                         # records of section 3: an ordered subsequence, by the fields given
      - {kind: message, step: ask, at: "+3d", status: sent}
      - {kind: message, step: thanks, subject: "Thank you!"}
      - {kind: exit, reason: completed}
    no_other_messages: true         # fail on any message record not matched above
"""
