from sharpvision.cli import main

raise SystemExit(main())
