from bench.audit.run import main

raise SystemExit(main())
