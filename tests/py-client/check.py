"""A channel team's use of the Python client openapi-python-client generates from the public
listener's served /openapi.json (tests/outside_tools.rs generates it as `nextbest_public`
beside this file's copy, runs `mypy --strict` over both, then runs this against the server).

Usage: check.py BASE_URL CUSTOMER_ID. Exits non-zero, saying what failed, if the contract does
not hold for a typed Python client: zoned times taken at their offset, a time without one
refused naming it, typed answers read back.
"""

from __future__ import annotations

import datetime as dt
import sys

from nextbest_public import Client
from nextbest_public.api.default import decide, post_events
from nextbest_public.models import (
    ApiError,
    ApiErrorError,
    DecideRequest,
    Decision,
    Event,
    EventBatch,
    EventsAccepted,
    EventType,
)


def fail(what: str) -> None:
    print(f"python client: {what}", file=sys.stderr)
    sys.exit(1)


def main(base_url: str, customer: str) -> None:
    client = Client(base_url=base_url, raise_on_unexpected_status=True)
    answer = decide.sync(
        client=client,
        body=DecideRequest(channel="web", placement="plans_page", customer_id=customer),
    )
    if not isinstance(answer, Decision):
        fail(f"decide answered {answer!r}")
        return
    if not answer.offers:
        fail(f"no offers for {customer}: {answer!r}")
    offer = answer.offers[0].offer_id

    # Two minutes ahead, written in zones east of UTC: the server takes events up to five
    # minutes ahead, so either is refused if its offset were dropped (read as UTC it would be
    # an hour or more in the future).
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)
    zoned = [
        soon.astimezone(dt.timezone(dt.timedelta(hours=1))),
        soon.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))),
        soon.astimezone(dt.timezone(dt.timedelta(hours=-5))),
    ]
    events = [
        Event(
            type_=EventType.IMPRESSION,
            customer_id=customer,
            offer_id=offer,
            decision_id=answer.decision_id,
            ts=t,
        )
        for t in zoned
    ]
    for e, t in zip(events, zoned):
        sent = e.to_dict()["ts"]
        if sent != t.isoformat():
            fail(f"the client sent ts {sent!r} for {t!r}")
    taken = post_events.sync(client=client, body=EventBatch(events=events))
    if not isinstance(taken, EventsAccepted):
        fail(f"events answered {taken!r}")
        return
    if taken.accepted != 3 or taken.rejected:
        fail(f"{taken.accepted} of 3 zoned events taken: {taken.to_dict()}")

    # A naive datetime carries no offset: the schema refuses it, so the batch is refused
    # whole (a 400 the client reads as ApiError), naming the event and the field.
    naive = Event(
        type_=EventType.CLICK,
        customer_id=customer,
        offer_id=offer,
        decision_id=answer.decision_id,
        ts=soon.replace(tzinfo=None),
    )
    refused = post_events.sync(client=client, body=EventBatch(events=[events[0], naive]))
    if not isinstance(refused, ApiError):
        fail(f"a time without an offset was taken: {refused!r}")
        return
    if refused.error != ApiErrorError.INVALID_REQUEST or not refused.detail.startswith(
        "events[1].ts: "
    ) or "offset" not in refused.detail:
        fail(f"a time without an offset was refused without naming it: {refused!r}")
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
