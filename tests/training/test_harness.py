"""lm-evaluation-harness on a student, offline: a tiny multiple-choice task defined here, scored by the harness
through miniplm's adapter and again by hand with plain torch."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from miniplm.training.harness import evaluate_tasks, student_lm
from tests.tiny import QUESTIONS, tiny_task


def loglikelihoods_by_hand(model_dir) -> list[list[float]]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    for q in QUESTIONS:
        scores = []
        for choice in q["choices"]:
            whole = tok(q["question"] + choice, add_special_tokens=False)["input_ids"]
            ctx = tok(q["question"], add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole[:-1]])).logits[0].double(), -1)
            cont = torch.tensor(whole[len(ctx) :])
            scores.append(float(logp[len(ctx) - 1 :].gather(1, cont[:, None]).sum()))
        out.append(scores)
    return out


def test_the_adapter_gives_plain_torch_log_likelihoods(models):
    lm = student_lm(models["teacher"], torch.device("cpu"), 64)
    expected = loglikelihoods_by_hand(models["teacher"])
    for q, scores in zip(QUESTIONS, expected, strict=True):
        got = lm.loglikelihood([SimpleNamespace(args=(q["question"], c)) for c in q["choices"]])
        assert [g for g, _ in got] == pytest.approx(scores, abs=1e-4)


def test_a_local_task_scores_like_plain_torch_and_an_unreachable_one_says_so(tmp_path, models):
    results = evaluate_tasks(models["teacher"], ["miniplm_tiny", "no_such_task_here"], tiny_task(tmp_path), None, 64)
    expected = loglikelihoods_by_hand(models["teacher"])
    right = [max(range(3), key=s.__getitem__) == q["answer"] for q, s in zip(QUESTIONS, expected, strict=True)]
    assert results["miniplm_tiny"]["acc"] == pytest.approx(sum(right) / len(right))
    assert "unavailable" in results["no_such_task_here"]


def test_the_task_index_is_built_once_and_only_as_wide_as_the_tasks_asked_for(tmp_path):
    """The user's folder alone when it defines every task asked for; lm-eval's library too when not; each index
    built once per process, and again when the folder's files change."""
    from miniplm.training.harness import task_manager

    include = tiny_task(tmp_path)
    own = task_manager(include, ["miniplm_tiny"])
    assert "miniplm_tiny" in own.all_tasks and "hellaswag" not in own.all_tasks
    assert task_manager(include, ["miniplm_tiny"]) is own
    wide = task_manager(include, ["miniplm_tiny", "hellaswag"])
    assert {"miniplm_tiny", "hellaswag"} <= set(wide.all_tasks)
    assert task_manager(include, ["hellaswag"]) is wide
    (tmp_path / "tasks" / "miniplm_tiny2.yaml").write_text(
        (tmp_path / "tasks" / "miniplm_tiny.yaml").read_text().replace("task: miniplm_tiny", "task: miniplm_tiny2")
    )
    grown = task_manager(include, ["miniplm_tiny2"])
    assert grown is not own and "miniplm_tiny2" in grown.all_tasks
