"""A ROS service whose answer may wait (for a frame still being segmented, for CLIP), answered off the executor.

rclpy runs a service's callback on the executor's thread and sends what it returns, so a callback that waits holds
up every other callback of the node. Here the callback only takes the request; the answer is worked out and sent
by whatever ``run`` does with the work (a pool thread), whichever executor spins the node: both of rclpy's look up
the service's ``send_response`` when the callback returns, and this one starts the work there, with the request's
header in hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.exceptions import InvalidHandle


@dataclass(frozen=True)
class _Taken:
    """A request the callback took, and the empty response rclpy made for it."""

    request: Any
    response: Any


def create_deferred_service(node: Any, srv_type: Any, name: str, answer: Callable[[Any, Any], Any],
                            run: Callable[[Callable[[], None]], None]) -> Any:
    """A service on ``node`` answered by ``answer(request, response) -> response``, which ``run(work)`` calls (on
    another thread, or at once)."""
    service = node.create_service(srv_type, name, _Taken)
    send = service.send_response

    def respond(taken: _Taken, header: Any) -> None:
        def work() -> None:
            response = answer(taken.request, taken.response)
            with contextlib.suppress(InvalidHandle):  # destroyed meanwhile (cleanup): the caller gets no answer
                send(response, header)

        run(work)

    service.send_response = respond
    return service
