from dropbench.cli import main

main()
