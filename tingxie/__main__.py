"""`python -m tingxie` is the `tingxie` command."""

from .cli import entry

if __name__ == "__main__":
    entry()
