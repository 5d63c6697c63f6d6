from mmre_cli.cli.app import main

main()
