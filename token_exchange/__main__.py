from token_exchange.server import main

main()
