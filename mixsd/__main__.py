from mixsd.cli import main

main()
