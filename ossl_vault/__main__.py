from ossl_vault.cli.entry import main

main()
