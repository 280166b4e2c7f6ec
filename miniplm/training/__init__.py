"""Language models trained and judged here: the training loop and its losses, Vanilla KD's online teacher,
the reference LM trained on D_ref, the students' evaluation, n-gram baselines and the lm-evaluation-harness bridge.

May import `miniplm.selection` and every stage below it, `miniplm.config` and `miniplm.progress`."""
