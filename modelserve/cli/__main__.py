from modelserve.cli.main import main

main()
