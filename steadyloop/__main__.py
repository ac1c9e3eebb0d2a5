from steadyloop.cli import main

main()
