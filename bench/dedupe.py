"""Duplicates in whole collections: candidate recall, quality against labels, speed and memory of `siamese dedupe`.

    .venv/bin/python bench/dedupe.py [--texts 4000] [--sizes 100000,1000000] [--config configs/collection.toml] [--store DIR]

1. A text pair model: `siamese train --data quora_dev.tsv` with the defaults (or `--config`), as
   a new user would, in a temporary MLflow store (the version it registers, at its stored
   threshold); its test AUC and the share of random pairs of the collection it accepts.
2. **Recall of the candidate search.** The first `--texts` distinct questions of
   `../shared/data/quora_dev.tsv` (10,000 at most) are scored exhaustively, every pair by the
   model's head; recall is the share of the pairs it scores at or above the threshold that the
   candidates contain (exact and HNSW index), for a fixed k nearest and for searches that grow
   a text's candidates while the model accepts the farthest (`siamese.dedupe.CandidateSearch`).
3. **Quality against labels.** Of the file's labelled pairs whose two questions are both in that
   collection: the share of duplicates that land in one group, and of non-duplicates wrongly in
   one group, for `siamese dedupe`'s groups and for groups from exhaustive scoring.
4. **Speed and memory.** `siamese dedupe` (the whole command: start-up, MLflow run, output and
   index written) on `--sizes` texts made by repeating and perturbing the development questions
   (a dropped or repeated word, a changed case, a typo), with its wall time and peak memory;
   beside it, exhaustive scoring's time for the same size, extrapolated from its measured rate
   with its n^2 / 2 pairs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
QUORA = REPOSITORY.parent / "shared" / "data" / "quora_dev.tsv"
SIAMESE = Path(sys.executable).parent / "siamese"
RECALL_SEARCHES = ((5, 5), (20, 20), (50, 50), (20, 160), (20, 640))  # (neighbours, max_neighbours); the last is the default
EXHAUSTIVE_BATCH = 200_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000, help="questions scored exhaustively (at most 10,000)")
    parser.add_argument("--sizes", default="100000,1000000", help="collection sizes timed with siamese dedupe")
    parser.add_argument("--config", help="a config file for siamese train (default: none, the defaults)")
    parser.add_argument("--store", type=Path, help="a folder kept for the MLflow store: trains into it once, reuses its model after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as directory:
        work = Path(directory)
        store = (args.store or work).resolve()
        environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlruns/mlflow.db", "PREFECT_HOME": str(work / "prefect")}
        os.environ.update(environment)
        import mlflow

        reused = (store / "mlruns" / "mlflow.db").exists() and mlflow.search_runs(experiment_names=["siamese-text"], max_results=1).shape[0]
        trained = 0.0 if reused else train_model(work, environment, args.config)
        run = mlflow.search_runs(experiment_names=["siamese-text"], max_results=1).iloc[0]
        version = mlflow.MlflowClient().search_model_versions(f"run_id = '{run.run_id}'")[0]
        model = f"models:/{version.name}/{version.version}"
        how = f"reused from {store}" if reused else f"siamese train --data {QUORA.name} {f'--config {args.config}' if args.config else '(defaults)'}, {trained:.0f} s"
        print(f"model: {model} ({how}), test AUC {run['metrics.test/roc_auc']:.4f}", flush=True)
        from tasks.registry import load_text_pair_embedder

        loaded = load_text_pair_embedder.fn(model)
        rate = measure_recall_and_quality(loaded.embedder, loaded.threshold, min(args.texts, 10_000))
        for size in (int(size) for size in args.sizes.split(",") if size):
            time_dedupe(work, environment, model, size, rate)


def train_model(work: Path, environment: dict[str, str], config: str | None) -> float:
    started = time.perf_counter()
    extra = ["--config", str(Path(config).resolve())] if config else []
    subprocess.run([str(SIAMESE), "train", "--data", str(QUORA), *extra], cwd=work, env=environment, check=True, capture_output=True)
    return time.perf_counter() - started


def questions(limit: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """The distinct questions of the file's first rows, both sides of each (`limit` of them at most), and those rows."""
    pairs = pd.read_csv(QUORA, sep="\t", dtype={"question1": str, "question2": str}).dropna(subset=["question1", "question2"])
    if limit is not None:
        sides = pd.DataFrame({"question1": pairs.question1, "question2": pairs.question2}).to_numpy(object).reshape(-1)
        distinct_so_far = pd.Series(sides).duplicated().eq(False).cumsum().to_numpy()[1::2]  # after each row's two sides
        pairs = pairs.iloc[: int(np.searchsorted(distinct_so_far, limit, side="right"))]
    texts = pd.unique(pd.concat([pairs.question1, pairs.question2]).to_numpy(object))
    return texts, pairs


def measure_recall_and_quality(embedder, threshold: float, count: int) -> float:
    """Print the recall and quality tables; return exhaustive scoring's pairs per second."""
    from siamese.dedupe import (
        GROUPINGS,
        CandidateSearch,
        IndexedTexts,
        NeighbourIndex,
        find_duplicates,
        group_pairs,
        index_texts,
        random_pair_acceptance,
        scored_candidates,
    )

    texts, pairs = questions(count)
    indexed = index_texts(embedder, texts)
    left, right = np.triu_indices(len(texts), 1)
    started = time.perf_counter()
    scores = np.concatenate(
        [embedder.score(indexed.encodings[left[start : start + EXHAUSTIVE_BATCH]], indexed.encodings[right[start : start + EXHAUSTIVE_BATCH]]) for start in range(0, len(left), EXHAUSTIVE_BATCH)]
    )
    rate = len(scores) / (time.perf_counter() - started)
    above = scores >= threshold
    print(f"\n{len(texts):,} questions, {len(scores):,} pairs scored exhaustively at {rate:,.0f} pairs/s; {above.sum():,} at or above {threshold:.4g} ({above.mean():.2%})")
    print(f"random pairs accepted (siamese dedupe's estimate from {10_000:,} pairs): {random_pair_acceptance(embedder, indexed.encodings, threshold):.2%}")
    wanted = left[above] * len(texts) + right[above]
    print("| nearest per text | index | candidate pairs | per text | texts cut short | recall of the head's pairs | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, limit in (("exact", len(texts)), ("hnsw", 0)):
        index = NeighbourIndex.build(indexed.index.vectors_of(np.arange(len(texts))), exact_limit=limit)
        for neighbours, most in RECALL_SEARCHES:
            started = time.perf_counter()
            found = scored_candidates(embedder, IndexedTexts(texts, indexed.encodings, index), threshold, CandidateSearch(neighbours, most))
            seconds = time.perf_counter() - started
            recall = np.isin(wanted, found.left.astype(np.int64) * len(texts) + found.right).mean() if len(wanted) else 1.0
            nearest = f"{neighbours}" if most == neighbours else f"{neighbours} to {most}"
            print(f"| {nearest} | {kind} | {len(found.left):,} | {len(found.left) / len(texts):.1f} | {found.cut_short:,} | {recall:.4f} | {seconds:.1f} |")

    position = {text: number for number, text in enumerate(texts)}
    inside = pairs[pairs.question1.isin(position) & pairs.question2.isin(position)]
    first, second = inside.question1.map(position).to_numpy(), inside.question2.map(position).to_numpy()
    labels = inside.is_duplicate.to_numpy().astype(bool)
    print(f"\n{len(inside):,} labelled pairs inside the collection ({labels.sum():,} duplicates)")
    print("| groups from | grouping | duplicates in one group | non-duplicates in one group | largest group |\n| --- | --- | ---: | ---: | ---: |")
    decided = embedder.score_pairs(indexed.encodings, indexed.encodings, first, second) >= threshold
    print(f"| the model on each labelled pair alone | - | {decided[labels].mean():.3f} | {decided[~labels].mean():.3f} | - |")
    for grouping in GROUPINGS:
        dedupe_groups = find_duplicates(embedder, indexed, threshold, grouping=grouping).group
        exhaustive_groups = group_pairs(grouping, len(texts), left, right, scores, threshold)
        for name, groups in (("siamese dedupe", dedupe_groups), ("exhaustive scoring", exhaustive_groups)):
            together = groups[first] == groups[second]
            print(f"| {name} | {grouping} | {together[labels].mean():.3f} | {together[~labels].mean():.3f} | {np.bincount(groups).max():,} |")
    return rate


def perturbed_collection(size: int, seed: int = 0) -> pd.DataFrame:
    """`size` questions: the development questions, then copies with a dropped or repeated word, a changed case or a typo."""
    texts, _ = questions()
    rng = np.random.default_rng(seed)
    chosen = texts[rng.integers(0, len(texts), size)]
    kinds = rng.integers(0, 5, size)  # 0: unchanged
    out = []
    for text, kind in zip(chosen, kinds):
        words = text.split()
        if kind == 1 and len(words) > 3:
            del words[rng.integers(len(words))]
        elif kind == 2:
            spot = rng.integers(len(words))
            words.insert(spot, words[spot])
        elif kind == 3:
            words = [word.lower() for word in words]
        elif kind == 4 and len(text) > 5:
            at = rng.integers(1, len(text) - 1)
            text = text[:at] + text[at + 1] + text[at] + text[at + 2 :]
            words = text.split()
        out.append(" ".join(words))
    return pd.DataFrame({"id": np.arange(size), "question": out})


def time_dedupe(work: Path, environment: dict[str, str], model: str, size: int, exhaustive_rate: float) -> None:
    source, output = work / f"collection-{size}.csv", work / f"groups-{size}.parquet"
    perturbed_collection(size).to_csv(source, index=False)
    command = [str(SIAMESE), "dedupe", "--model", model, "--input", str(source), "--output", str(output)]
    started = time.perf_counter()
    with open(work / "dedupe.out", "w") as out, open(work / "dedupe.err", "w") as err:
        process = subprocess.Popen(command, cwd=work, env=environment, stdout=out, stderr=err)
        peak = 0
        while process.poll() is None:
            peak = max(peak, peak_rss(process.pid))
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if process.returncode:
        print(f"\n{size:,} texts: siamese dedupe failed ({process.returncode}): {(work / 'dedupe.err').read_text()[-2000:]}")
        return
    groups = pd.read_parquet(output, columns=["group"])
    exhaustive = size * (size - 1) / 2 / exhaustive_rate
    print(
        f"\n{size:,} texts: siamese dedupe {seconds:.0f} s wall, peak RSS {peak / 2**20:.2f} GiB (the command's process; "
        f"its temporary Prefect API adds about 0.25), {groups.group.nunique():,} groups; exhaustive scoring would take {exhaustive:,.0f} s "
        f"({exhaustive / seconds:,.0f}x)"
    )
    print("\n".join(line for line in (work / "dedupe.out").read_text().splitlines() if line.strip())[-1500:])


def peak_rss(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM), in KiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


if __name__ == "__main__":
    main()
