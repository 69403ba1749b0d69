"""Bad input data as one line: `DataError`, the assertions the readers' parse functions make,
and the translation of TensorFlow's pipeline errors into a DataError that names the file and
the record."""

import re

import tensorflow as tf

ASSERT_TAG = "yt8m data error"


class DataError(ValueError):
    """Input data that cannot be read as configured; the message names the file."""


def assert_all(ok, names, what, values=None):
    """Fail the pipeline naming the first record where `ok` is false; returns the check (an op
    to depend on where later ops would fail first on the bad input)."""
    bad = tf.where(~ok)[:1, 0]
    data = [ASSERT_TAG, tf.gather(names, bad), what]
    if values is not None:
        data.append(tf.gather(values, bad))
    return tf.debugging.Assert(tf.reduce_all(ok), data, summarize=4)



_ASSERT_ERROR = re.compile(re.escape(ASSERT_TAG) + r"\] \[(?P<name>[^\]]*)\] \[(?P<what>[^\]]*)\]"
                           r"(?: \[(?P<value>[^\]]*)\])?")
_NAMED_PARSE_ERROR = re.compile(
    r"(?:Name|example id): (?P<name>.+? record \d+)[,:]?\s*(?P<what>.*)")
_MISSING = re.compile(r"Feature(?: list)?:? '?(?P<key>[\w-]+)'? .*?required but could not be found")
_WRONG_SIZE = re.compile(r"Key: (?P<key>[\w-]+), Index: \d+\.\s+"
                         r"Number of \w+ values != expected\.\s+"
                         r"Values size: (?P<got>\d+) but output shape: \[(?P<want>\d+)\]")
_INPUT_ERROR_MARKS = (ASSERT_TAG, "ParseExample", "ParseSequenceExample", "record",
                      "TFRecord", "parse example")


def error_message(err):
    return getattr(err, "message", None) or str(err)


def is_input_error(err):
    if isinstance(err, (UnicodeDecodeError, tf.errors.DataLossError,
                        tf.errors.PermissionDeniedError)):
        return True  # TF quotes an unparseable record's raw bytes, or a file is damaged
    return any(mark in error_message(err) for mark in _INPUT_ERROR_MARKS)


def describe_named_error(err, path, missing_feature_hint="", label_hint=""):
    """A failure while parsing `path` with named records -> DataError naming the record; the
    hints are added to a missing feature and to a label out of range."""
    if isinstance(err, UnicodeDecodeError):
        return _find_unparseable(path)
    message = error_message(err)
    if isinstance(err, tf.errors.DataLossError):
        what = "not a TFRecord file" if "Is this even a TFRecord" in message else \
            "corrupt or truncated record (bad length or CRC)"
        return DataError(f"{path}: {what}{_position(path)}")
    match = _ASSERT_ERROR.search(message)
    if match:
        value = f" (got {match['value']})" if match["value"] else ""
        what = match["what"].replace("\\'", "'")
        if what.startswith("label id outside"):
            value += label_hint
        return DataError(f"{match['name']}: {what}{value}")
    match = _NAMED_PARSE_ERROR.search(message)
    if match:
        what = _describe_parse_failure(match["what"])
        if what.endswith("is missing"):
            what += missing_feature_hint
        return DataError(f"{match['name']}: {what}")
    return DataError(f"{path}: {first_line(message)}")


def _position(path):
    """' after N good records' for a damaged TFRecord file."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError:
        pass
    return f" after {count} good records"


def _find_unparseable(path):
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        try:
            tf.train.SequenceExample.FromString(record.numpy())
        except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError types
            return DataError(f"{path} record {index}: not a valid Example or SequenceExample")
    return DataError(f"{path}: a record could not be parsed")


def _describe_parse_failure(what):
    missing = _MISSING.search(what)
    if missing:
        return f"feature '{missing['key']}' is missing"
    size = _WRONG_SIZE.search(what)
    if size:
        return f"feature '{size['key']}' has {size['got']} values, expected {size['want']}"
    if what.startswith("Invalid protocol message"):
        return "not a valid Example or SequenceExample"
    return first_line(what)


def first_line(message):
    line = message.strip().splitlines()[0] if message.strip() else "unreadable data"
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:\w+\].*$", "", line)
