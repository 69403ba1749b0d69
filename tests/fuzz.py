"""A long fuzz run of the readers, outside the suite: the property of tests/test_reader_fuzz.py
(a random or mutated file parses correctly or stops with a one-line DataError; with
--skip_corrupt_records never an error) over as many records as asked.

    .venv/bin/python tests/fuzz.py --records=10000

Prints the files and records tried, the outcomes, the time; exit 1 with hypothesis's smallest
failing example if any file breaks the property.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10000, help="records to try, at least")
    parser.add_argument("--mutated_per_file", type=int, default=50,
                        help="at most this many mutated records in a file")
    args = parser.parse_args()
    if args.records < 1 or args.mutated_per_file < 1:
        parser.error("--records and --mutated_per_file must be at least 1")
    # A round of files at a time, until enough records were tried (a file holds a random
    # number of them); each round draws new examples.
    os.environ["YT8M_FUZZ_MUTATED"] = str(args.mutated_per_file)
    os.environ["YT8M_FUZZ_EXAMPLES"] = "100"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [HERE, os.path.dirname(HERE)]
    import test_reader_fuzz as fuzz

    started = time.time()
    while fuzz.TRIED["records"] < args.records:
        try:
            fuzz.test_fuzzed_input_parses_or_fails_cleanly()
        except Exception as error:  # hypothesis has printed the smallest failing example
            print(f"FAILED after {fuzz.TRIED['files']:,} files: {type(error).__name__}: "
                  f"{error}", file=sys.stderr)
            sys.exit(1)
        print(f"{fuzz.TRIED['records']:,} records in {fuzz.TRIED['files']:,} files, "
              f"{time.time() - started:.0f}s", flush=True)
    tried = fuzz.TRIED
    print(f"done: {tried['records']:,} records in {tried['files']:,} files (random bytes among "
          f"them) in {time.time() - started:.0f}s; parsed {tried['parsed']:,}, some skipped "
          f"{tried['skipped some']:,}, one-line errors {tried['clean errors']:,}; failures: none")


if __name__ == "__main__":
    main()
