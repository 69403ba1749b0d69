"""Run an experiment by its config: experiments/configs/NAME.py holds its recipe, and its
docstring the command, the wall time and the expected result.

    .venv/bin/python experiments/run.py --list
    .venv/bin/python experiments/run.py NAME [the runner's flags, e.g. --no_train]

The config names its runner (frontier.py, teachers.py or paper.py) and the runner's flags that
make it this experiment; every runner trains through runs.run_train, which keeps each finished
train.py run in its folder and reads it again instead of training it again, so a run cut short
goes on where it stopped.
"""

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def config_names():
    folder = os.path.join(HERE, "configs")
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f[0] != "_")


def summary_line(name):
    """The first line of config `name`'s docstring."""
    return (importlib.import_module(f"configs.{name}").__doc__ or "").strip().splitlines()[0]


def main(argv):
    names = config_names()
    if len(argv) < 2 or argv[1] in ("--list", "-h", "--help"):
        print(__doc__.strip() + "\n\nConfigs:\n" + "\n".join(
            f"  {name:<18} {summary_line(name)}" for name in names))
        return
    name = argv[1]
    if name not in names:
        raise SystemExit(f"error: no experiment config {name!r} in experiments/configs/; there "
                         f"are {', '.join(names)} (run.py --list)")
    config = importlib.import_module(f"configs.{name}")
    runner = importlib.import_module(config.RUNNER)
    from absl import app

    sys.argv = [os.path.join(HERE, f"{config.RUNNER}.py"), *config.ARGS, *argv[2:]]
    sys.modules["__main__"].__doc__ = runner.__doc__  # what absl's --help prints
    app.run(runner.main)


if __name__ == "__main__":
    main(sys.argv)
