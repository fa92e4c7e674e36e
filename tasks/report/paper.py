"""The paper this project re-examines: its numbers, where they came from, and what its method did.

Kept as named constants so the report, its tests and the README quote one source. Every number here is
read from the paper's text (a copy is in ../shared/seed/paper.txt beside the repository).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_TITLE = "Comparing CNNs and RNNs for Music Genre Recognition"
PAPER_AUTHORS = "anonymous author(s)"
# Given in the paper's text; written without a scheme so the offline report holds no external URL.
# The method notes below were read from its main.py, RNN.py and dataPipeline.py at this commit.
PAPER_CODE = "github.com/jArnke/JakeYenneyCSE190FinalProject"
PAPER_CODE_COMMIT = "1f08801"

PAPER_CLIP_SECONDS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0)

# Test accuracy (fraction of 100 test tracks) per model and clip length.
PAPER_ACCURACY: dict[str, dict[float, float]] = {
    "cnn": {1.0: 0.17, 5.0: 0.21, 15.0: 0.35, 30.0: 0.42},  # the paper's Table 2
    "rnn": {1.0: 0.14, 5.0: 0.21, 15.0: 0.15, 30.0: 0.14},  # the paper's Table 1
}
PAPER_TABLES: dict[str, str] = {"cnn": "Table 2", "rnn": "Table 1"}

PAPER_DATA = "full GTZAN from Kaggle: 10 genres x 100 tracks of 30 s (1,000 tracks)"
PAPER_SPLIT = (
    "its own split: 10 files per genre as test (100 tracks, one clip from the start of each), the rest for "
    "training; 30 epochs; one run, no seeds"
)
PAPER_ROW_NOTE = "full GTZAN, its own split"


@dataclass(frozen=True)
class Difference:
    """One way the paper's method differs from this project's, in plain words."""

    topic: str
    paper: str
    this_run: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "prediction",
        "Its code's argmax never updated its running maximum, so it returned the last genre scoring above the "
        "first genre rather than the most probable one, and its accuracies were counted that way.",
        "Each track's genre is the argmax of the mean of its clips' probabilities (track-level voting).",
    ),
    Difference(
        "test split",
        "Its test tracks were the first 10 files of each genre in an unsorted directory listing (the text says "
        "the last 10), so which tracks were tested depended on the file system.",
        "Tracks are split into train, validation and test by a seeded, stratified split at track level, "
        "recorded in every result; no track is in two splits.",
    ),
    Difference(
        "normalisation",
        "The log-mel spectrograms went into the networks without any standardisation.",
        "Each mel band is standardised with a mean and deviation computed on the training tracks only.",
    ),
    Difference(
        "crops",
        "Each track gave one clip, its first seconds (29 s for the 30 s setting).",
        "Training draws new random crops of every training track each epoch, as many at every clip length; testing "
        "covers each test track with clips and averages their probabilities.",
    ),
    Difference(
        "training length",
        "Every model trained a fixed 30 epochs; a validation share was held out but nothing acted on it.",
        "Each network has its own recipe unless the run set one (the training budget above): by default the CNN "
        "and the CRNN stop early when the validation loss stops improving, and the RNN runs every epoch with a "
        "cosine schedule.",
    ),
    Difference(
        "architecture",
        "Its code's CNN has three blocks of 3x3 convolution (64, 128 and 128 filters, no padding), ELU, batch norm, "
        "max-pooling ((2, 2), then (4, 2) twice, over mel bands and time) and dropout 0.1, then a flatten, a dense "
        "layer of 128 without activation and the softmax; its RNN three LSTM layers of 128 with input dropout 0.3, "
        "each followed by batch norm, then the same two dense layers.",
        "The CNN keeps the blocks with 32, 64 and 128 filters, 'same' padding and pools that quarter the mel axis "
        "first (a cheaper second convolution), and averages the last map over time and bands instead of "
        "flattening it, so that its size does not grow with the clip (a flatten holds over 2 M weights at 30 s); "
        "the RNN's dropout (0.2) follows each LSTM instead of entering it. Both drop the dense layer without "
        "activation: two linear layers in a row compute what one does. The CRNN follows Nasrullah & Zhao (2019).",
    ),
    Difference(
        "repeats",
        "One run and no random seeds; the paper itself reports large fluctuations between retrainings.",
        "Every cell is trained once per seed, and the report gives the mean, the spread over seeds and a "
        "bootstrap interval over test tracks.",
    ),
)
