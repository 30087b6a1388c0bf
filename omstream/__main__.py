from omstream.cli import main

main()
