"""``python -m srcli`` (also what ``torchrun -m srcli train`` runs)."""

from .cli import main

if __name__ == "__main__":
    main()
