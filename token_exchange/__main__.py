from token_exchange.cli.service import main

main()
