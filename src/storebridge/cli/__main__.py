"""``python -m storebridge.cli ...``: the same as the ``storebridge`` console script."""

from storebridge.cli import main

if __name__ == "__main__":
    main()
