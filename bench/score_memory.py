"""Batch scoring memory: peak resident memory of `siamese score` on a file and on one 3x larger.

Reading, scoring and writing go chunk by chunk, so the peak should not grow with the file. The
benchmark trains a small text pair model on sample questions in a temporary directory, writes
two unlabelled sample files (N and 3N rows), scores each in a fresh process, and prints one JSON
line: rows, wall seconds, rows per second and peak RSS (MiB) per file.

    .venv/bin/python bench/score_memory.py --rows 300000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from siamese.data.sample_questions import sample_question_pairs

SIAMESE = str(Path(sys.executable).with_name("siamese"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the smaller file (the larger has 3x)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="score-memory-") as directory:
        work = Path(directory)
        sample_question_pairs(2000).to_csv(work / "questions.csv", index=False)
        subprocess.run([SIAMESE, "train", "--data", "questions.csv", "--epochs", "2"], cwd=work, check=True, capture_output=True)
        results = [_score(work, rows) for rows in (args.rows, 3 * args.rows)]
    print(json.dumps({"score_memory": results}))


def _score(work: Path, rows: int) -> dict[str, float]:
    pairs = work / f"pairs_{rows}.csv"
    sample_question_pairs(rows, seed=9).drop(columns="is_duplicate").to_csv(pairs, index=False)
    command = [SIAMESE, "score", "--model", "models:/siamese-text@champion", "--input", pairs.name, "--output", "scores.parquet"]
    started = time.perf_counter()
    # A helper process per run: RUSAGE_CHILDREN then reports this run's peak alone.
    code = f"import resource, subprocess; subprocess.run({command!r}, check=True, capture_output=True); " \
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # fmt: skip
    peak_kib = int(subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True, text=True).stdout)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds), "peak_rss_mib": round(peak_kib / 1024)}


if __name__ == "__main__":
    main()
