"""Students on lm-evaluation-harness tasks (optional: `pip install "miniplm[lmeval]"`).

The harness asks a model for log-likelihoods of continuations; `StudentLM` answers them with a trained student, in
its own tokenizer, each request on its own (context cut to the student's window from the left). Tasks whose data
cannot be reached (a hub dataset offline) are reported as unavailable with the reason, never as a score; tasks
that need text generation are refused: students are judged by likelihood.
"""

from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import torch


class HarnessUnavailable(RuntimeError):
    """lm-evaluation-harness is not installed."""


def _lm_base():
    try:
        from lm_eval.api.model import LM
    except ImportError as exc:
        raise HarnessUnavailable(
            'lm-evaluation-harness tasks need the lm-eval package: pip install "miniplm[lmeval]"'
        ) from exc
    return LM


def student_lm(model_dir: Path, device: torch.device, window: int):
    """An lm-eval `LM` backed by a student checkpoint (model and tokenizer in `model_dir`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class StudentLM(_lm_base()):
        def __init__(self) -> None:
            super().__init__()
            self.tok = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()

        def _encode(self, text: str) -> list[int]:
            return self.tok(text, add_special_tokens=False)["input_ids"]

        @torch.inference_mode()
        def _continuation(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
            """log p(continuation | context) and whether every continuation token is the greedy choice."""
            ids = (context + continuation)[-(window + 1) :]
            x = torch.tensor(ids[:-1], device=device)[None]
            logp = torch.log_softmax(self.model(x).logits[0].float(), dim=-1)[-len(continuation) :]
            target = torch.tensor(continuation, device=device)
            total = float(logp.gather(1, target[:, None]).sum())
            return total, bool((logp.argmax(-1) == target).all())

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            out = []
            for request in requests:
                context, continuation = request.args
                whole, ctx = self._encode(context + continuation), self._encode(context)
                cont = whole[len(ctx) :] or self._encode(continuation)  # the joint encoding splits at the seam
                ctx = whole[: len(whole) - len(cont)] or [self.tok.eos_token_id]
                out.append(self._continuation(ctx, cont))
            return out

        def loglikelihood_rolling(self, requests) -> list[float]:
            out = []
            for request in requests:
                ids = [self.tok.eos_token_id] + self._encode(request.args[0])
                total = 0.0
                for start in range(0, len(ids) - 1, window):  # each window predicts up to `window` new tokens
                    piece = ids[start : start + window + 1]
                    total += self._continuation(piece[:1], piece[1:])[0]
                out.append(total)
            return out

        def generate_until(self, requests) -> list[str]:
            raise NotImplementedError("tasks that generate text are not supported: students are judged by likelihood")

    return StudentLM()


_INDEX_LOCK = threading.Lock()


@functools.cache
def _task_index(include: str | None, include_defaults: bool, include_stamp: tuple):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=include_defaults)


def _folder_stamp(include: str | None) -> tuple:
    """What the user's task folder holds now: an edited or added task file makes a new index."""
    if not include:
        return ()
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in Path(include).rglob("*") if p.is_file()))


def task_manager(include: str | None, tasks: list[str]):
    """An lm-eval TaskManager that knows `tasks`: the user's own folder alone when it defines them all, else with
    lm-eval's own library too. Indexing that library reads thousands of task files (seconds), so each index is
    built once per process, not once per student."""
    stamp = _folder_stamp(include)
    with _INDEX_LOCK:
        if include:
            own = _task_index(include, False, stamp)
            if set(tasks) <= set(own.all_tasks):
                return own
        return _task_index(include, True, stamp)


def evaluate_tasks(model_dir: Path, tasks: list[str], include: str | None, limit: int | None, window: int,
                   device_spec: str = "auto") -> dict[str, dict]:  # fmt: skip
    """{task: {metric: value}} for each task, or {task: {"unavailable": reason}} when it cannot run here."""
    from lm_eval import simple_evaluate

    from miniplm.scoring.devices import pick_device

    lm = student_lm(model_dir, pick_device(device_spec), window)
    manager = task_manager(include, tasks)
    results: dict[str, dict] = {}
    for task in tasks:
        try:
            run = simple_evaluate(
                model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=False, bootstrap_iters=0
            )
        except Exception as exc:  # unknown task, data not reachable offline, generation needed: say which
            results[task] = {"unavailable": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        metrics = run["results"].get(task, {})
        results[task] = {
            name.split(",")[0]: float(value)
            for name, value in metrics.items()
            if isinstance(value, int | float) and "stderr" not in name and math.isfinite(float(value))
        }
    return results
