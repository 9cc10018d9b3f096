"""`python -m bgremove`, and the `bgremove` command's entry point."""


def main() -> None:
    # Before anything else is imported: a Ctrl-C from the very first instant is counted and
    # handled by the command (a summary, a report, exit 130), never a traceback.
    from bgremove.cli import interrupts

    interrupts.count_early()
    from bgremove.cli.app import main as run

    run()


if __name__ == "__main__":
    main()
