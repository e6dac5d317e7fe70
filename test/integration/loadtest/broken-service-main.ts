/** `bun broken-service-main.ts PORT [breakage]`: the broken-service fixture as its own process. */
import { type Breakage, startBrokenService } from "./broken-service.ts";

const service = startBrokenService((process.argv[3] ?? "none") as Breakage, 20, Number(process.argv[2]));
console.log(`listening on ${service.url}`);
