from lenet2vit.cli import main

raise SystemExit(main())
