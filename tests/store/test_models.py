import pytest
from safetensors.torch import load_file, save_file

from miniplm.store.models import (
    ModelSpecError,
    TokenizerMismatchError,
    check_same_tokenizer,
    model_fingerprint,
    resolve_model,
)


def test_tokenizer_mismatch_is_a_clear_error(models):
    check_same_tokenizer(str(models["teacher"]), str(models["reference"]))
    with pytest.raises(TokenizerMismatchError, match="does not share the teacher's tokenizer"):
        check_same_tokenizer(str(models["teacher"]), str(models["other_lm"]))


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="no such GGUF file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_fingerprint_follows_weights(tmp_path, models):
    import shutil

    copy = tmp_path / "lm"
    shutil.copytree(models["reference"], copy)
    before = model_fingerprint(copy)
    assert resolve_model(str(copy)).fingerprint == before
    weights = load_file(copy / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert model_fingerprint(copy) != before


def test_max_len_beyond_the_models_context_is_a_clear_error(models):
    from miniplm.store.models import check_context, context_length

    assert context_length(str(models["teacher"])) == 2048
    check_context(str(models["teacher"]), 2048, "teacher")
    with pytest.raises(ModelSpecError, match="at most 2048 positions but max_len is 4096"):
        check_context(str(models["teacher"]), 4096, "teacher")
