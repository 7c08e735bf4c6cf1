"""Moved to `ids.tools.bench`; `python -m ids.bench` still runs it."""
from ids.tools.bench import main

if __name__ == "__main__":
    main()
