from shipyard._main import main

main()
