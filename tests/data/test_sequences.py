"""Students' rows: whole instances in a seeded order, never a window from one instance into another."""

import numpy as np
import torch

from miniplm.data.sequences import IGNORE, RowStream, pack_rows, write_sequences

EOS = 0


def _sequences(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):  # distinct token values per sequence, so a row shows where each piece came from
        body = list(range(1000 * (i + 1), 1000 * (i + 1) + int(rng.integers(1, 40))))
        out.append(body + ([EOS] if i % 3 else []))  # every third one has no EOS of its own (cut mid-document)
    return out


def test_rows_hold_whole_instances_separated_by_eos(tmp_path):
    seqs = _sequences(60)
    write_sequences(tmp_path / "t.bin", seqs)
    stream = RowStream(tmp_path / "t.bin", block_size=24, seed=3, eos_id=EOS)
    rows = stream.rows_per_pass()
    seen: dict[int, list[int]] = {}
    for _ in range(rows):
        x, labels = stream.next_batch(1)
        row, lab = x[0].tolist(), labels[0].tolist()
        # labels are the next tokens where the next position is real, IGNORE over the padding
        n_real = next((i for i in range(len(lab)) if lab[i] == IGNORE), len(lab)) + 1
        assert all(v == IGNORE for v in lab[n_real - 1 :])
        assert lab[: n_real - 1] == row[1:n_real]
        # split the real part at EOS: each piece belongs to one sequence (its values share a thousand)
        piece: list[int] = []
        for t in row[:n_real]:
            if t == EOS:
                if piece:
                    seen.setdefault(piece[0] // 1000, []).extend(piece)
                piece = []
            else:
                piece.append(t)
                assert t // 1000 == piece[0] // 1000, "a row ran from one instance into another"
        if piece:
            seen.setdefault(piece[0] // 1000, []).extend(piece)
    # one pass shows every sequence's tokens exactly once (the pieces of a long one may land in any order)
    assert {k: sorted(v) for k, v in seen.items()} == {i + 1: [t for t in s if t != EOS] for i, s in enumerate(seqs)}
    assert stream.state == {"pass": 0, "row": rows}


def test_a_pass_is_a_seeded_order_and_rows_are_nearly_full():
    lengths = np.random.default_rng(0).integers(5, 1025, 3000)
    a = pack_rows(lengths, np.random.default_rng([1, 0]).permutation(3000), 1025)
    b = pack_rows(lengths, np.random.default_rng([1, 0]).permutation(3000), 1025)
    c = pack_rows(lengths, np.random.default_rng([2, 0]).permutation(3000), 1025)
    assert a == b and a != c
    assert lengths.sum() / (len(a) * 1025) > 0.93
    assert sorted(seq for row in a for seq, _, _ in row) == list(range(3000))


def test_a_sequence_longer_than_a_row_is_cut_into_pieces_of_its_own(tmp_path):
    write_sequences(tmp_path / "t.bin", [list(range(1, 30)) + [EOS], [7, 8, EOS]])
    stream = RowStream(tmp_path / "t.bin", block_size=9, seed=0, eos_id=EOS)
    rows = [stream.next_batch(1)[0][0].tolist() for _ in range(stream.rows_per_pass())]
    long_rows = [r for r in rows if 1 in r or 11 in r or 21 in r]
    assert [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] in long_rows and [11, 12, 13, 14, 15, 16, 17, 18, 19, 20] in long_rows
    assert isinstance(torch.tensor(rows), torch.Tensor)
