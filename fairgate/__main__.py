from fairgate.gateway.cli import main

raise SystemExit(main())
