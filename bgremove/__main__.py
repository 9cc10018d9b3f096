from bgremove.cli import main

main()
