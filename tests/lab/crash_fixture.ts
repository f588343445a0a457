/** Test fixture: builds a lab, prints its prefix, then waits to be killed. */
import { createLab } from "./lab.ts";

const lab = await createLab({ nodes: 1, outside: false });
lab.spawn(lab.nodes[0], ["sleep", "60"], { cgroup: lab.nodes[0].cgroup });
console.log(lab.prefix);
await new Promise(() => {});
