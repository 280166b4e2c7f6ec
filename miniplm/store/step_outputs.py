"""A cached step's outputs, declared once on the step: the one answer to "is this step done?".

`@produces(test)` puts on a step function the test of what its last run left in the work directory; the test names
only the step's parameters it reads, and is built from the checks and paths the step itself skips its work by. A
Prefect task trusts its cache entry only while the test holds (tasks/caching.py), asked through `outputs_there` with
the arguments of the call in hand (a task's may have more parameters than its step's); `done` asks it for a call
of the step itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

Step = TypeVar("Step", bound=Callable[..., Any])


def produces(test: Callable[..., bool]) -> Callable[[Step], Step]:
    """Declare, on a step, the test of its outputs (called with the step's parameters it names)."""

    def declare(step: Step) -> Step:
        step.outputs_test = test  # type: ignore[attr-defined]
        return step

    return declare


def declared(step: Callable[..., Any]) -> Callable[..., bool]:
    test = getattr(step, "outputs_test", None)
    if test is None:
        raise TypeError(f"{step.__qualname__} declares no outputs (@produces)")
    return test


def arguments(fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """A call's arguments by parameter name, defaults included."""
    call = inspect.signature(fn).bind(*args, **kwargs)
    call.apply_defaults()
    return dict(call.arguments)


def outputs_there(step: Callable[..., Any], named: dict[str, Any]) -> bool:
    """Whether `step`'s outputs for these arguments (by name) are where its last run left them."""
    test = declared(step)
    return test(**{name: named[name] for name in inspect.signature(test).parameters})


def done(step: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Whether `step(*args, **kwargs)` would find its outputs already there."""
    return outputs_there(step, arguments(step, args, kwargs))
