"""What happened to each input of a batch (`Outcome`, with its `Status`), and to the whole run
(`Summary`: counters, and a bounded list of failures, so memory does not grow with the batch)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from bgremove.errors import BgRemoveError, FileFailed, StopBatch
from bgremove.plan import WorkItem


class Status(str, Enum):
    """What happened to one input."""

    done = "done"
    skipped = "skipped"  # its output is up to date (or kept: see the item's reason)
    failed = "failed"
    not_processed = "not processed"  # the batch stopped first
    not_image = "not an image"  # found in a folder, and not an image: skipped
    would_process = "would process"  # --dry-run
    pruned = "pruned"  # a stamped output whose input is gone, removed (prune)
    would_prune = "would prune"


@dataclass(slots=True)
class Outcome:
    """What happened to one work item.

    A failure carries its error object (`failure`, with its parts and fields): `error` is its
    message in the library's words, and `detail` and `request_id` come from it (a FileFailed's)
    unless given. An outcome that is no failure may say why in `error` alone (`interrupted`).
    """

    item: WorkItem
    status: Status
    error: str | None = None
    bytes: int = 0
    ms: float = 0.0
    credits_remaining: int | None = None
    request_id: str | None = None
    credits_spent: int = 0
    detail: str | None = None  # what the library underneath said (FileFailed.detail)
    # The error behind `error`, with its parts: the command line says it with its flags.
    failure: BgRemoveError | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        failure = self.failure
        if failure is None:
            return
        if self.error is None:
            self.error = str(failure)
        if isinstance(failure, FileFailed):
            self.detail = self.detail if self.detail is not None else failure.detail
            self.request_id = (self.request_id if self.request_id is not None
                               else failure.request_id)

    def as_dict(self) -> dict[str, object]:
        return {
            "input": None if self.status in (Status.pruned, Status.would_prune)
            else self.item.name,
            "output": self.item.output_name if self.status is not Status.not_image else None,
            "status": self.status.value,
            "reason": self.item.reason,
            "error": self.error,
            "detail": self.detail,
            "bytes": self.bytes,
            "ms": round(self.ms, 1),
            "credits_remaining": self.credits_remaining,
            "request_id": self.request_id,
        }


# The summary lists at most this many failures (and files not processed, and non-images) by
# name; the counts are always whole, and `--report` and `--json` list every file.
LISTED = 1000


@dataclass
class Summary:
    """The run so far: counters, and the first LISTED failures and other notable files."""

    counts: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    failures: list[Outcome] = field(default_factory=list)
    not_processed: list[Outcome] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    # Why outputs were made, kept or would be made: (status, reason) -> count (stamps.py).
    reasons: Counter[tuple[Status, str]] = field(default_factory=Counter)
    # Inputs found by the walk so far, and whether it is over (a progress bar's total); the count
    # of a walk run ahead only to count them, once it is over (Batch.run's count_ahead).
    found: int = 0
    walk_done: bool = False
    counted: int | None = None
    credits_spent: int = 0
    credits_remaining: int | None = None
    stopped: StopBatch | None = None
    interrupted: bool = False
    # Interrupted twice: work in flight was dropped unwritten and may still be running.
    abandoned: bool = False
    dry_run: bool = False
    prune_skipped: str | None = None  # why pruning was asked for and not done
    # --check: a dry run that fails (exit 1) when any output is missing or stale.
    check: bool = False
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return self.counts[status]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.item.reason is not None and outcome.status is not Status.failed:
            self.reasons[outcome.status, outcome.item.reason] += 1
        self.credits_spent += outcome.credits_spent
        if outcome.credits_remaining is not None:
            # Answers arrive out of order; the balance only falls during a run.
            previous = self.credits_remaining
            self.credits_remaining = (outcome.credits_remaining if previous is None
                                      else min(previous, outcome.credits_remaining))
        listed = {Status.failed: self.failures,
                  Status.not_processed: self.not_processed}.get(outcome.status)
        if listed is not None and len(listed) < LISTED:
            listed.append(outcome)
        elif (outcome.status is Status.not_image and outcome.item.source is not None
              and len(self.not_images) < LISTED):
            self.not_images.append(outcome.item.source)

    @property
    def failed(self) -> bool:
        """Whether an input failed, or (`check`) an output is missing or stale."""
        stale = self.check and (self.counts[Status.would_process] or
                                self.counts[Status.would_prune])
        return bool(self.counts[Status.failed] or stale)

    def why(self, status: Status) -> dict[str, int]:
        """How many outcomes of `status` there were for each reason, most first."""
        counts = Counter({reason: n for (s, reason), n in self.reasons.items() if s is status})
        return dict(counts.most_common())


Progress = Callable[[Outcome, Summary], None]
