"""Segment-level YouTube-8M (the 2019 release): rated 5-frame segments, the per-class ranking
of a segment submission, its Kaggle CSV and the segment metric.

Records are frame-level `SequenceExample`s whose context holds `segment_labels`,
`segment_start_times` (in frames: a frame is a second) and `segment_scores` (1 positive, 0
negative): each entry rates one segment of readers.SEGMENT_FRAMES (5) frames for one class.
Segments are named `<video id>:<start frame>`.

The metric (the starter's segment_eval_inference.py, Kaggle's MAP@100,000): for each class of
the submission, its list of segments in the submitted order, cut to the first top_n, keeps only
the segments rated for that class; the class's average precision over that list has the
class's rated positives as its denominator; the metric is the mean over the classes that have
rated positives (the starter's script fails on the others).
"""

import csv
import os

import numpy as np

import utils

HEADER = "Class,Segments\n"
MAX_PREDICTIONS = 100_000  # per class, as Kaggle's MAP@100,000
CLASSES_PER_SEGMENT = 20  # each segment's top classes that enter the per-class lists
LABEL_IDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "segment_label_ids.csv")  # the starter's 1,000 rated classes


def read_label_ids(path=LABEL_IDS_FILE):
    """The class ids of a segment_label_ids.csv (header `Index`, then one id a line)."""
    try:
        with open(path) as f:
            rows = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    except OSError as err:
        raise ValueError(f"--segment_label_ids_file={path}: {err.strerror}") from None
    if rows and rows[0] == "Index":
        rows = rows[1:]
    try:
        ids = sorted({int(row) for row in rows})
    except ValueError:
        raise ValueError(f"--segment_label_ids_file={path}: give a header 'Index', then one "
                         "class id a line (the starter's segment_label_ids.csv)") from None
    if not ids:
        raise ValueError(f"--segment_label_ids_file={path} lists no class")
    return ids


def segment_name(video_id, start):
    video_id = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
    return f"{video_id}:{int(start)}"


class Ranking:
    """Each class's segments by descending score, at most `max_predictions` a class: what a
    submission lists. Segments come in batches; each enters the lists of its top
    `classes_per_segment` classes among `label_ids` (those below num_classes). Ties are ordered
    by the segments' order of arrival. Memory: at most two arrays of 2 x max_predictions
    entries a class."""

    def __init__(self, label_ids, num_classes, max_predictions=MAX_PREDICTIONS,
                 classes_per_segment=CLASSES_PER_SEGMENT):
        ids = np.asarray(label_ids, np.int64)
        self.label_ids = ids[ids < num_classes]  # a model of fewer classes (generated data)
        if not self.label_ids.size:
            raise ValueError(f"no class of the segment classes is below the model's "
                             f"{num_classes} classes: give --segment_label_ids_file of its "
                             "classes")
        self.max_predictions = int(max_predictions)
        self.per_segment = min(int(classes_per_segment), self.label_ids.size)
        self.names = []  # segment names, in order of arrival
        self.scores = [[] for _ in self.label_ids]  # per class: arrays of scores
        self.segments = [[] for _ in self.label_ids]  # per class: arrays of segment numbers
        self.held = np.zeros(self.label_ids.size, np.int64)

    def add(self, names, probabilities):
        """Segments `names` [S] with their probabilities [S, num_classes]."""
        first = len(self.names)
        self.names.extend(names)
        scores = np.asarray(probabilities)[:, self.label_ids]  # (S, L)
        top = np.argpartition(-scores, self.per_segment - 1, axis=1)[:, :self.per_segment]
        rows = np.repeat(np.arange(len(scores)), self.per_segment)
        columns = top.ravel()
        order = np.argsort(columns, kind="stable")  # grouped by class, segments in order
        rows, columns = rows[order], columns[order]
        bounds = np.searchsorted(columns, np.arange(self.label_ids.size + 1))
        for column in np.flatnonzero(np.diff(bounds)):
            chosen = rows[bounds[column]:bounds[column + 1]]
            self.scores[column].append(scores[chosen, column].astype(np.float32))
            self.segments[column].append((first + chosen).astype(np.int64))
            self.held[column] += chosen.size
            if self.held[column] > 2 * self.max_predictions:
                self._keep_best(column)

    def _keep_best(self, column):
        scores = np.concatenate(self.scores[column])
        segments = np.concatenate(self.segments[column])
        order = self._order(scores, segments)[:self.max_predictions]
        self.scores[column], self.segments[column] = [scores[order]], [segments[order]]
        self.held[column] = order.size

    @staticmethod
    def _order(scores, segments):
        return np.lexsort((segments, -scores.astype(np.float64)))  # score down, then arrival

    def ranked(self):
        """{class id: [segment names, best first]} of every class (empty lists included)."""
        found = {}
        for column, label in enumerate(self.label_ids):
            if self.scores[column]:
                self._keep_best(column)
                found[int(label)] = [self.names[s] for s in self.segments[column][0]]
            else:
                found[int(label)] = []
        return found


def write_submission(output_file, ranking):
    """The segment CSV of a Ranking, written under a temporary name and renamed once complete;
    returns the number of classes written."""
    utils.prepare_dir(os.path.dirname(os.path.abspath(output_file)))
    temporary = f"{output_file}.tmp-{os.getpid()}"
    ranked = ranking.ranked()
    try:
        with open(temporary, "w") as out:
            out.write(HEADER)
            for label, names in ranked.items():
                out.write(f"{label},{' '.join(names)}\n")
        os.replace(temporary, output_file)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return len(ranked)


def read_submission(path):
    """{class id: [segment names in the submitted order]} of a segment CSV (header
    `Class,Segments`, or the starter README's `Class Id,Segment Ids`, or none)."""
    found = {}
    try:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or (number == 1 and not line.split(",")[0].strip().isdigit()):
                    continue
                label, _, segments = line.partition(",")
                try:
                    label = int(label)
                except ValueError:
                    raise ValueError(f"{path}, line {number}: a segment submission line is "
                                     "'<class id>,<video id>:<start> ...'") from None
                if label in found:
                    raise ValueError(f"{path}, line {number}: class {label} is listed twice")
                found[label] = segments.split()
    except OSError as err:
        raise ValueError(f"--submission_file={path}: {err.strerror}") from None
    return found


class RatedSegments:
    """The ratings of labelled records: {(segment name, class): score}, and per class the
    count of rated positives."""

    def __init__(self):
        self.scores = {}
        self.positives = {}

    def add(self, names, classes, scores):
        for name, label, score in zip(names, classes, scores):
            key = (name, int(label))
            if key not in self.scores:
                self.positives[int(label)] = self.positives.get(int(label), 0) + (score > 0)
            self.scores[key] = float(score)

    def __len__(self):
        return len(self.scores)


def average_precision(ranked, rated, label, top_n=0):
    """The class's average precision of its ranked segment names (see the module's doc)."""
    names = ranked[:top_n] if top_n else ranked
    hits = np.array([rated.scores[(n, label)] > 0 for n in names if (n, label) in rated.scores],
                    bool)
    positives = rated.positives.get(label, 0)
    if not positives or not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].sum() / positives)


def segment_map(ranked, rated, top_n=MAX_PREDICTIONS):
    """(the mean average precision over the submission's classes that have rated positives,
    the number of those classes)."""
    classes = [label for label in sorted(ranked) if rated.positives.get(label, 0) > 0]
    if not classes:
        return 0.0, 0
    return float(np.mean([average_precision(ranked[c], rated, c, top_n) for c in classes])), \
        len(classes)


def add_rated(ranking, rated, batch, probabilities):
    """A batch of rated segments (numpy, FrameReader(segments="rated")): its segments into the
    ranking, its ratings into `rated`."""
    names = [segment_name(v, s) for v, s in zip(batch["id"], batch["start"])]
    ranking.add(names, probabilities)
    rows, classes = np.nonzero(batch["label_weights"])
    rated.add([names[r] for r in rows], classes, batch["labels"][rows, classes])


def rated_segments(reader, files, batch_size=256, num_readers=8):
    """RatedSegments of the records of `files` (segment-rated frame-level records)."""
    rated = RatedSegments()
    with reader.reraise_data_errors(files):
        for batch in reader.ratings(files, batch_size, num_readers):
            rated.add([segment_name(v, s) for v, s in zip(batch["id"].numpy(),
                                                           batch["start"].numpy())],
                      batch["class"].numpy(), batch["score"].numpy())
    return rated
